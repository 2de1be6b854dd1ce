"""The county link: the terminal's MQTT interface for the county's maintenance
(docs/mqtt/README.md)."""
