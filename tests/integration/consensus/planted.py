"""A small project with planted annotators: four good ones (90 %), one spammer whose answers ignore the truth."""

from __future__ import annotations

from services.consensus.aggregation import DEFAULT_METHOD
from shared.events.envelope import new_event

CLASSES = ["a", "b"]
N_TASKS = 40
N_GOLD = 16
GOOD = [f"good-{i}" for i in range(4)]
SPAMMER = "spammer"


def truth(t: int) -> str:
    return CLASSES[t % 2]


def answers() -> list[tuple[str, str, str]]:
    """(task, annotator, label) triples."""
    out = []
    for t in range(N_TASKS):
        for i, annotator in enumerate(GOOD):
            wrong = t % 10 == i  # each good annotator errs on a different tenth of the tasks
            out.append((f"task-{t}", annotator, CLASSES[1 - t % 2] if wrong else truth(t)))
        out.append((f"task-{t}", SPAMMER, CLASSES[(t // 2) % 2]))  # independent of the truth
    # A task only good-0 and the spammer labelled, disagreeing: a tie before any fit, good-0's after one.
    out.append(("tie", "good-0", "b"))
    out.append(("tie", SPAMMER, "a"))
    return out


def gold_events(env) -> list:  # noqa: ANN001
    return [new_event("gold.set", {"task_id": f"task-{t}", "project_id": env.project_id, "control": "label",
                                   "value": truth(t)}, producer="api", org_id=env.org_id, project_id=env.project_id)
            for t in range(N_GOLD)]


async def load(env) -> None:  # noqa: ANN001
    """Publish the gold labels and answers; refits only on demand (no automatic one racing the test)."""
    first, *rest = answers()
    await env.publish(env.annotation(first[0], first[1], first[2], classes=CLASSES))
    await env.wait_published(task_id=first[0])
    response = await env.client.put(f"{env.base}/settings", headers=env.manager(), json={
        "method": DEFAULT_METHOD, "target_confidence": 0.8, "max_labels": 5,
        "refit_after_labels": 1_000_000, "refit_interval_seconds": 86_400})
    assert response.status_code == 200, response.text
    await env.publish(*gold_events(env))
    await env.publish(*[env.annotation(task, annotator, value, classes=CLASSES) for task, annotator, value in rest])
    await env.wait_published(task_id="tie", n_labels=2)
    await env.wait_published(task_id=f"task-{N_TASKS - 1}", n_labels=5)
