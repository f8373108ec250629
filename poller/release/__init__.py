"""What an install of reward-poller brings with it beside the code: the commented example
configuration, the systemd units and the Prometheus alert rules (package data), and the
commands that put them in place (``init``, ``deploy systemd``, ``deploy prometheus``)."""
