"""What an install of reward-poller brings with it beside the code: the commented example
configuration and the systemd units (package data), and the commands that put them in place
(``init``, ``deploy systemd``)."""
