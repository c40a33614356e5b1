"""Known-good pins are per closure; a release tag keeps its pin; --previous steps back."""

from __future__ import annotations

from nixify.pipeline.pins import (
    KnownGoodRecord,
    activation_order,
    plan_pin,
    previous_record,
    record_name,
)


def rec(n: int, closure: str, tag: str | None = None, restored: str | None = None
        ) -> KnownGoodRecord:
    stamp = f"2026120{n}T000000Z"
    return KnownGoodRecord(name=record_name(stamp, f"/nix/store/{closure * 8}-sys"), host="h",
                           closure=f"/nix/store/{closure * 8}-sys", commit="c" * 40,
                           dirty=False, utc=f"2026-12-0{n}T00:00:00+00:00", kind="deploy",
                           tag=tag, restored_at=restored)


def test_a_redeploy_of_the_same_closure_refreshes_and_keeps_the_tag() -> None:
    old = [rec(1, "a"), rec(2, "b", tag="release/nas/x")]
    new, remove = plan_pin(old, rec(3, "b"), keep=5, live_tags=frozenset({"release/nas/x"}))
    assert remove == [old[1].name] and new.tag == "release/nas/x"


def test_no_op_redeploys_never_evict_a_live_release() -> None:
    tagged = rec(1, "a", tag="release/nas/x")
    existing = [tagged, rec(2, "b"), rec(3, "c")]
    _, remove = plan_pin(existing, rec(4, "d"), keep=2, live_tags=frozenset({"release/nas/x"}))
    assert remove == [existing[1].name]  # b goes; a stays (tagged); c is the newest other
    _, remove = plan_pin(existing, rec(4, "d"), keep=2, live_tags=frozenset())
    assert remove == [tagged.name, existing[1].name]  # the tag is gone: a may go
    _, remove = plan_pin(existing, rec(4, "d"), keep=2, live_tags=None)
    assert tagged.name not in remove  # tags unknown: never drop a tagged pin
    # many redeploys of one closure: one pin, nothing else evicted
    pins = [tagged, rec(2, "b")]
    for n in range(3, 9):
        new, remove = plan_pin(pins, rec(n, "b"), keep=2, live_tags=frozenset())
        pins = [p for p in pins if p.name not in remove] + [new]
    assert sorted(p.closure[-12:] for p in pins) == sorted([tagged.closure[-12:],
                                                           rec(2, "b").closure[-12:]])


def test_previous_steps_back_through_history() -> None:
    a, b, c = rec(1, "a"), rec(2, "b"), rec(3, "c")
    assert previous_record([a, b, c], c.closure) == b
    # after rolling back to b (b keeps its place), the next step is a, not c again
    b2 = b.model_copy(update={"restored_at": "2026-12-09T00:00:00+00:00"})
    assert previous_record([a, b2, c], b.closure) == a
    assert previous_record([a, b2, c], a.closure) is None
    assert sorted([a, b2, c], key=activation_order)[-1] == b2  # b is the current point
    assert previous_record([a, b, c], "/nix/store/unknown") == c
