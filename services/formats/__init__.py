"""Pure parsers of foreign monitor payloads (Alertmanager, PagerDuty) into alert observations."""
