"""The notifier: outbound notifications (generic JSON and Slack incoming webhooks) of the log's
events and of due obligations, at least once, each recorded as `notification.sent`.

`obligations` (what is due, and delivery ids), `messages` and `slack` (what is said), `deliver`
(HTTP with retries) and `ledger` (what the log says was sent) serve `notifier`, which
`bootstrap` starts with the service and `supervision` keeps running.
"""
