"""The plain sequential script the worker is compared with: the same job, written the way a
careful person would write a cron job, and nothing more.

``python -m bench.baseline_script --influitive URL --token T --org O --vendor URL --key K
--db PATH`` reads every page of outstanding redemptions, then for each one it has not done
yet: saves the idempotency key, places one order (Tremendous ``POST /orders`` with
``external_id``), saves the answer, posts one decision to Influitive, saves the decision.
No retries, no concurrency, no rate limiting. Prints one JSON line: counts of vendor
answers by status, decisions sent and accepted.

To be fair it keeps the same delivery guarantee as the worker: a durable SQLite file (WAL,
``synchronous = FULL``, as the worker's ledger), three commits per redemption (the key before
the vendor call, the answer before Influitive is told, the decision after), one httpx client
per service with keep-alive.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter

import httpx


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("influitive", "token", "org", "vendor", "key", "db"):
        p.add_argument(f"--{name}", required=True)
    a = p.parse_args()
    db = sqlite3.connect(a.db, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE IF NOT EXISTS done (id TEXT PRIMARY KEY, key TEXT, state TEXT,"
               " order_id TEXT)")
    source = httpx.Client(base_url=a.influitive, timeout=30,
                          headers={"Authorization": f"Token {a.token}", "X_ORG_ID": a.org})
    vendor = httpx.Client(base_url=a.vendor, timeout=30,
                          headers={"Authorization": f"Bearer {a.key}"})
    items, url = [], "/reward_redemptions"
    while url:
        page = source.get(url)
        page.raise_for_status()
        body = page.json()
        items += body["reward_redemptions"]
        contacts = {c["id"]: c for c in body.get("contacts", [])}
        for item in body["reward_redemptions"]:
            item.setdefault("contact", contacts.get(item.get("contact_id"), {}))
        url = (body.get("links") or {}).get("next")
    answers: Counter[int] = Counter()
    decided = accepted = 0
    for item in items:
        rid = str(item["id"])
        if db.execute("SELECT 1 FROM done WHERE id = ?", (rid,)).fetchone():
            continue
        key = f"script-{rid}"
        db.execute("INSERT INTO done VALUES (?, ?, 'ordering', NULL)", (rid, key))  # commit 1
        contact = item["contact"]
        order = vendor.post("/api/v2/orders", json={
            "external_id": key, "payment": {"funding_source_id": "balance"},
            "reward": {"products": ["AMZN-US"],
                       "value": {"denomination": 25.0, "currency_code": "USD"},
                       "recipient": {"name": contact.get("first_name", ""),
                                     "email": contact.get("email", "")},
                       "delivery": {"method": "EMAIL"}}})
        answers[order.status_code] += 1
        if order.status_code not in (200, 201):
            continue  # no retries: left for a person (or the next run)
        order_id = order.json()["order"]["id"]
        db.execute("UPDATE done SET state = 'ordered', order_id = ? WHERE id = ?",  # commit 2
                   (order_id, rid))
        decision = source.post(f"/reward_redemptions/{rid}/decision/fulfill",
                               json={"message": "Your $25 Amazon gift card is on its way."})
        decided += 1
        if decision.status_code < 300:
            accepted += 1
            db.execute("UPDATE done SET state = 'fulfilled' WHERE id = ?", (rid,))  # commit 3
    print(json.dumps({"seen": len(items), "vendor_answers": dict(answers),
                      "decisions": decided, "accepted": accepted}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
