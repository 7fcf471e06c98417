"""The lineage of a re-sent request, and the key of a message that has no MessageId: decided by table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.pure.request import message_key
from shared.pure.retry import (
    ATTEMPTS,
    ORIGINAL_ID,
    QUOTA,
    REASON,
    TRANSIENT,
    body_digest,
    resend,
    resend_record,
    verified,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
AGAIN = resend("orig", {}, NOW, QUOTA, nonce="n0")  # the first re-send of "orig", as the orchestrator schedules it
BODY = body_digest(b'{"poolId": "p"}')
LINEAGE = {ORIGINAL_ID: "orig", ATTEMPTS: 1, REASON: QUOTA}


@pytest.mark.parametrize(("message_id", "properties", "record", "kept"), [
    ("plain", {"source": "x"}, None, {"source": "x"}),
    # The orchestrator's own re-send, proven by the record it wrote before sending.
    (AGAIN.message_id, {**LINEAGE, "source": "x"}, resend_record(AGAIN, BODY), {**LINEAGE, "source": "x"}),
    # The same properties as text (Service Bus hands application properties back as sent, or as strings).
    (AGAIN.message_id, {ORIGINAL_ID: "orig", ATTEMPTS: "1", REASON: QUOTA}, resend_record(AGAIN, BODY),
     {ORIGINAL_ID: "orig", ATTEMPTS: "1", REASON: QUOTA}),
    # Forged: no record, a record of another message, a record that says another lineage or attempt.
    ("forged", LINEAGE, None, {}),
    ("forged", LINEAGE, resend_record(AGAIN, BODY), {}),
    (AGAIN.message_id, {**LINEAGE, ORIGINAL_ID: "victim"}, resend_record(AGAIN, BODY), {}),
    (AGAIN.message_id, {**LINEAGE, ATTEMPTS: 99}, resend_record(AGAIN, BODY), {}),
    # Half a lineage is still a claim: an attempt count alone would spend another request's retries.
    ("forged", {ATTEMPTS: 100, "source": "x"}, None, {"source": "x"}),
    # The right id and properties with another body: a sender who guessed them cannot swap the request.
    (AGAIN.message_id, LINEAGE, resend_record(AGAIN, body_digest(b"{}")), {}),
])
def test_a_lineage_is_kept_only_when_the_orchestrator_recorded_it(message_id, properties, record, kept):
    assert verified(message_id, properties, record, BODY) == kept


def test_a_resend_record_holds_what_the_resend_carries():
    again = resend(AGAIN.message_id, LINEAGE, NOW, TRANSIENT, nonce="n1")
    assert AGAIN.message_id == "orig~retry1-n0"
    assert resend_record(again, BODY) == {"messageId": "orig~retry2-n1", ORIGINAL_ID: "orig", ATTEMPTS: 2,
                                          REASON: TRANSIENT, "bodySha256": BODY}
    assert verified(again.message_id, again.properties, resend_record(again, BODY), BODY) == again.properties


@pytest.mark.parametrize(("message_id", "sequence", "body", "key"), [
    ("m-1", 7, b"{}", "m-1"),
    (None, 7, b"{}", "seq-7"),
    ("", 0, b"{}", "seq-0"),
    (None, None, b"{}", "body-44136fa355b3678a1146ad16f7e8649e94fb4fc2"),
])
def test_a_message_without_a_message_id_gets_a_key_of_its_own(message_id, sequence, body, key):
    assert message_key(message_id, sequence, body) == key
