"""The tomato daemon: one long-lived service per host and port."""
