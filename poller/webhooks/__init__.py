"""Webhook receivers on the daemon's listener: real-time intake.

``POST /webhooks/influitive``: Influitive's "Reward Redemption Requested" webhook is a nudge,
not the truth: it triggers an immediate (coalesced) cycle and the poll stays the source of
what is outstanding. Nothing is ordered from its body.

``POST /webhooks/influenceio``: an Influence.io ``points/redeemed`` event is stored in the
ledger before it is answered 2xx (deduplicated on the pair of webhook id and event id), then
worked by the same machinery as an Influitive redemption. The other topics Influence.io
documents (``poller.influenceio.KNOWN_TOPICS``) are answered 200 and ignored (logged at
debug); a missing or unknown ``X-Webhook-Topic`` (compared case-insensitively) is answered 400
and logged as a warning. A body that is not strict JSON (NaN, a number that overflows, nesting
past ``poller.webhooks.body.MAX_DEPTH``) is answered 400 with the reason.

Bodies are read chunk by chunk against ``[webhooks] max_body_bytes`` and
``[server] body_timeout_seconds`` (docs/security.md).

Neither sender documents a signature, so both require a shared secret, accepted in an
``X-Webhook-Secret`` header or a ``token`` query parameter (many senders let you set only
the URL), compared in constant time; anything else is answered 401.
"""
