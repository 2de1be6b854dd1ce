"""Amt-O-Mat board firmware: pure logic (config, inputs, outputs, events, app), the
hardware layer (hardware, platform) and the runtime that wires them for main.py."""

FW_VERSION = "0.3.0"
