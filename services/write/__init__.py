"""The service layer: the decide-append loop, alert correlation, intake rules and answers.

It knows no transport: the HTTP API, the NATS intake and the CLI all come in through `Intake`.
"""
