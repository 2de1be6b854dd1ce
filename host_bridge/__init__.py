"""The kiosk bridge: the endpoint the kiosk application talks to, and its client library."""
