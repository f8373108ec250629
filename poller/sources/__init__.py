"""Where redemptions come from: Influitive (polled) and Influence.io (webhooks). Each
source owns its wire format and turns payloads into ``poller.domain.model.Redemption``."""
