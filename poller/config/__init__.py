"""Configuration: a TOML file, overridden key by key from the environment.

``REWARD_POLLER_<SECTION>__<KEY>`` overrides ``[section] key`` (e.g.
``REWARD_POLLER_INFLUITIVE__API_TOKEN``), so secrets can stay out of the file. Validation
happens once, at start-up, before anything is polled; every error names the key, and the
file or the environment variable it came from:

* a config file that does not exist is an error naming the path (whatever the environment
  holds; ``load_config(required=False)`` is the environment-only form for callers that
  want it);
* a ``REWARD_POLLER_*`` variable that maps to no known key is an error naming the variable,
  with the nearest known name (a misspelled section, or ``_`` where ``__`` was meant);
* a value that is not valid JSON where JSON is expected names the variable (exit 2);
* an unknown key in the file names the file and suggests the nearest key;
* a file readable by other users that holds a secret gets a warning naming it and its mode.

Every secret key (a ``SecretStr`` field, in any section or vendor) can also be given as
``<key>_file``: a path whose stripped contents are the value, relative paths resolved against
``$CREDENTIALS_DIRECTORY`` when systemd set it (``LoadCredential=``). See ``poller.config.secrets``.

The package, by room: ``sections`` and ``server`` (the ``[section]`` models, plain settings),
``model`` (``Config``), ``environment`` (the ``REWARD_POLLER_*`` variables), ``secrets``
(secret keys, ``*_file``, URL redaction), ``describe`` (error lines), ``load`` (the file and
the checks of the environment). Nothing here imports the daemon: the listener's address and
limits are plain data in ``server``.
"""

from __future__ import annotations

from poller.config.environment import ENV_DELIMITER, ENV_PREFIX
from poller.config.load import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    OTHER_VARIABLES,
    check_environment,
    config_path,
    load_config,
)
from poller.config.model import Config
from poller.config.secrets import CREDENTIALS_ENV, FILE_SUFFIX, secret_keys
from poller.config.sections import (
    AlertsSettings,
    FulfillmentSettings,
    InfluenceioSettings,
    InfluitiveSettings,
    LedgerSettings,
    MetricsSettings,
    RetrySettings,
    RewardSettings,
    ScheduleSettings,
    SecuritySettings,
)
from poller.config.server import ServerLimits, ServerSettings, WebhooksSettings, parse_listen
from poller.domain.errors import ConfigError

__all__ = [
    "CONFIG_ENV", "CREDENTIALS_ENV", "DEFAULT_CONFIG_PATH", "ENV_DELIMITER", "ENV_PREFIX",
    "FILE_SUFFIX", "OTHER_VARIABLES", "AlertsSettings", "Config", "ConfigError",
    "FulfillmentSettings", "InfluenceioSettings", "InfluitiveSettings", "LedgerSettings",
    "MetricsSettings", "RetrySettings", "RewardSettings", "ScheduleSettings",
    "SecuritySettings", "ServerLimits", "ServerSettings", "WebhooksSettings",
    "check_environment", "config_path", "load_config", "parse_listen", "secret_keys",
]
