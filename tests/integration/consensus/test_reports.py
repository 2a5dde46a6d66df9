"""Agreement report, agreement over time and confusion matrices: as data, PNG and SVG."""

from __future__ import annotations

import math

from services.consensus.agreement.metrics import LabelTable, fleiss_kappa, krippendorff_alpha, percent_agreement
from tests.integration.consensus import planted
from tests.integration.consensus.test_refits import refit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_agreement_report_matches_the_metrics(consensus) -> None:  # noqa: ANN001
    await planted.load(consensus)
    response = await consensus.client.get(f"{consensus.base}/agreement", headers=consensus.manager())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["control"] == "label" and body["level"] == "nominal"
    triples = planted.answers()
    table = LabelTable.from_labels([t for t, _, _ in triples], [a for _, a, _ in triples],
                                   [v for _, _, v in triples], categories=planted.CLASSES)
    summary = body["summary"]
    assert summary["n_labels"] == len(triples) and summary["n_annotators"] == 5
    assert math.isclose(summary["percent_agreement"], percent_agreement(table))
    assert math.isclose(summary["fleiss_kappa"], fleiss_kappa(table))
    assert math.isclose(summary["krippendorff_alpha"], krippendorff_alpha(table, "nominal"))
    pairs = {(p["annotator_a"], p["annotator_b"]): p for p in body["pairs"]}
    assert len(pairs) == 10  # every pair of the five co-labelled all 40 tasks
    good_pair = pairs[("good-0", "good-1")]
    assert good_pair["n_items"] >= 40 and good_pair["cohen_kappa"] > 0.5
    spam_pair = pairs[("good-0", planted.SPAMMER)]
    assert abs(spam_pair["cohen_kappa"]) < 0.25


async def test_agreement_level_follows_the_label_type(consensus) -> None:  # noqa: ANN001
    for task, values in (("r1", (1, 2, 2)), ("r2", (4, 4, 5)), ("r3", (3, 3, 3))):
        for i, value in enumerate(values):
            await consensus.submit(task, f"a{i}", value, control="rating", label_type="rating")
    await consensus.wait_published(task_id="r3", n_labels=3)
    body = (await consensus.client.get(f"{consensus.base}/agreement", headers=consensus.manager())).json()
    assert body["control"] == "rating" and body["level"] == "interval"
    assert body["summary"]["krippendorff_alpha"] > 0.7
    ordinal = (await consensus.client.get(f"{consensus.base}/agreement", params={"level": "ordinal"},
                                          headers=consensus.manager())).json()
    assert ordinal["level"] == "ordinal"
    bad = await consensus.client.get(f"{consensus.base}/agreement", params={"control": "nope"},
                                     headers=consensus.manager())
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


async def test_agreement_over_time_as_data_png_and_svg(consensus) -> None:  # noqa: ANN001
    await planted.load(consensus)
    url = f"{consensus.base}/agreement/over-time"
    data = await consensus.client.get(url, params={"bucket": "day"}, headers=consensus.manager())
    assert data.status_code == 200, data.text
    [bucket] = data.json()["buckets"]  # every label arrived today
    assert bucket["n_labels"] == len(planted.answers()) and bucket["krippendorff_alpha"] is not None
    png = await consensus.client.get(url, params={"format": "png"}, headers=consensus.manager())
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC) and len(png.content) > 2000
    svg = await consensus.client.get(url, params={"format": "svg"}, headers=consensus.manager())
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content[:2000] and svg.content.rstrip().endswith(b"</svg>")
    bad = await consensus.client.get(url, params={"format": "gif"}, headers=consensus.manager())
    assert bad.status_code == 422


async def test_confusion_matrix_as_data_png_and_svg(consensus) -> None:  # noqa: ANN001
    await planted.load(consensus)
    url = f"{consensus.base}/annotators/good-0/confusion"
    before = await consensus.client.get(url, headers=consensus.manager())
    assert before.status_code == 404  # estimated by a refit
    await refit(consensus)
    data = (await consensus.client.get(url, headers=consensus.manager())).json()
    assert data["classes"] == planted.CLASSES
    matrix = data["confusion"]
    assert all(math.isclose(sum(row), 1.0) for row in matrix) and matrix[0][0] > 0.7 and matrix[1][1] > 0.7
    png = await consensus.client.get(url, params={"format": "png"}, headers=consensus.manager())
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    svg = await consensus.client.get(url, params={"format": "svg"}, headers=consensus.manager())
    assert svg.status_code == 200 and b"<svg" in svg.content[:2000]
