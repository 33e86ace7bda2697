"""Rectification items and statistics through the real running gateway's HTTP API."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from alerts.model import AlertClass, Disposition, Severity, Signal
from alerts.rectification import EvidenceLimits
from gateway.model import now_ms
from tests.conftest import LiveGateway
from tests.test_rectification import png

DAY = 86_400_000
SITE = {
    "id": "shop-17",
    "name": "五金店",
    "village": "陂头村",
    "industry": "small_shop",
    "enterprise": "陂头五金有限公司",
}


async def setup_site(live: LiveGateway) -> None:
    assert (await live.client.post("/api/sites", json=SITE)).status_code == 201
    device = {"id": "sm-17", "profile": "smoke_alarm_nbiot", "site_id": "shop-17"}
    assert (await live.client.post("/api/devices", json=device)).status_code == 201


async def smoke_alarm(live: LiveGateway, ts_ms: int) -> int:
    changes = await live.gateway.alerts.handle(
        [
            Signal(
                "sm-17",
                "smoke_alarm",
                True,
                ts_ms,
                None,
                Severity.RED,
                AlertClass.HAZARD,
                "fire",
                "烟雾火警",
            )
        ]
    )
    return changes[0].alert.id


async def enterprise_client(live: LiveGateway) -> httpx.AsyncClient:
    token = await live.gateway.tokens.create(
        "shop-owner", "enterprise", enterprise=str(SITE["enterprise"])
    )
    return httpx.AsyncClient(
        base_url=live.base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


def report_files(*files: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", f) for f in files]


async def test_the_closed_loop_through_the_api(live: LiveGateway) -> None:
    await setup_site(live)
    alert_id = await smoke_alarm(live, now_ms() - 60_000)

    created = await live.client.post(
        "/api/rectifications",
        json={"alert_id": alert_id, "assignee": "王经理", "deadline": "2099-06-30"},
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert (item["state"], item["source"], item["site_id"], item["village"]) == (
        "open",
        "alert",
        "shop-17",
        "陂头村",
    )
    assert (item["enterprise"], item["hazard"], item["created_by"]) == (
        "陂头五金有限公司",
        "fire",
        "admin",
    )
    assert item["deadline"].startswith("2099-07-01T00:00:00")  # the end of 30 June, local
    item_id = item["id"]
    again = await live.client.post(
        "/api/rectifications",
        json={"alert_id": alert_id, "assignee": "x", "deadline": "2099-06-30"},
    )
    assert again.status_code == 409 and f"item {item_id}" in again.json()["detail"]

    photo = png(6, 6)
    async with await enterprise_client(live) as owner:
        reported = await owner.post(
            f"/api/rectifications/{item_id}/report",
            data={"note": "更换了烟感"},
            files=report_files(("更换后.png", photo, "image/png")),
        )
        assert reported.status_code == 200, reported.text
        assert (reported.json()["state"], reported.json()["reported_by"]) == (
            "fix_reported",
            "shop-owner",
        )

    sent_back = await live.client.post(
        f"/api/rectifications/{item_id}/send-back", json={"reason": "照片不清楚"}
    )
    assert sent_back.status_code == 200 and sent_back.json()["state"] == "open"
    async with await enterprise_client(live) as owner:
        second = await owner.post(
            f"/api/rectifications/{item_id}/report",
            data={"note": "重新拍照"},
            files=report_files(("clear.png", png(12, 12), "image/png")),
        )
        assert second.status_code == 200
    verified = await live.client.post(
        f"/api/rectifications/{item_id}/verify", json={"note": "已销号"}
    )
    assert verified.status_code == 200
    assert (verified.json()["state"], verified.json()["verified_by"]) == ("verified", "admin")

    detail = (await live.client.get(f"/api/rectifications/{item_id}")).json()
    assert [
        (h["action"], h["from_state"], h["to_state"], h["actor"]) for h in detail["history"]
    ] == [
        ("create", None, "open", "admin"),
        ("report", "open", "fix_reported", "shop-owner"),
        ("send_back", "fix_reported", "open", "admin"),
        ("report", "open", "fix_reported", "shop-owner"),
        ("verify", "fix_reported", "verified", "admin"),
    ]
    assert detail["history"][2]["note"] == "照片不清楚"
    first_evidence = detail["evidence"][0]
    assert detail["history"][1]["evidence_ids"] == [first_evidence["id"]]
    assert (first_evidence["filename"], first_evidence["size"], first_evidence["sha256"]) == (
        "更换后.png",
        len(photo),
        hashlib.sha256(photo).hexdigest(),
    )
    assert first_evidence["uploaded_by"] == "shop-owner"

    download = await live.client.get(first_evidence["url"])
    assert download.status_code == 200
    assert download.content == photo
    assert download.headers["content-type"] == "image/png"
    assert download.headers["x-content-sha256"] == hashlib.sha256(photo).hexdigest()
    assert "filename*=UTF-8''%E6%9B%B4" in download.headers["content-disposition"]
    stored = live.settings.data_dir / "evidence" / first_evidence["sha256"][:2]
    assert (stored / first_evidence["sha256"]).read_bytes() == photo
    missing = await live.client.get(f"/api/rectifications/{item_id}/evidence/999")
    assert missing.status_code == 404

    # Who did what is in the audit log as well.
    audit = [
        (e.actor, e.action)
        for e in reversed(await live.gateway.audit.entries())
        if e.target == f"rectification:{item_id}"
    ]
    assert audit == [
        ("admin", "rectification.create"),
        ("shop-owner", "rectification.report"),
        ("admin", "rectification.send_back"),
        ("shop-owner", "rectification.report"),
        ("admin", "rectification.verify"),
    ]


async def finding(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    body = {
        "site_id": "shop-17",
        "hazard": "blocked_exit",
        "description": "安全出口堵塞",
        "assignee": "店主",
        "deadline": "2099-01-01T18:00",
        **changes,
    }
    response = await live.client.post("/api/rectifications", json=body)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def test_illegal_transitions_and_bad_input_get_a_clear_4xx(live: LiveGateway) -> None:
    await setup_site(live)
    item = await finding(live)
    assert item["source"] == "inspection"
    base = f"/api/rectifications/{item['id']}"

    refused = await live.client.post(f"{base}/verify", json={})
    assert refused.status_code == 409
    assert "cannot verify" in refused.json()["detail"] and "it is open" in refused.json()["detail"]
    assert (await live.client.post(f"{base}/send-back", json={"reason": "x"})).status_code == 409
    assert (await live.client.post(f"{base}/send-back", json={"reason": ""})).status_code == 422
    assert (await live.client.post("/api/rectifications/999/verify", json={})).status_code == 404
    assert (await live.client.get("/api/rectifications/999")).status_code == 404

    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"site_id": "nowhere"}, "not registered"),
        ({"deadline": "next week"}, "not an ISO 8601"),
        ({"deadline": "2001-01-01"}, "in the future"),
        ({"alert_id": 12345}, "alert 12345 does not exist"),
        ({"dead_line": "2099-01-01"}, "dead_line"),
    ]
    for changes, message in bad_bodies:
        body: dict[str, Any] = {
            "site_id": "shop-17",
            "hazard": "h",
            "description": "d",
            "assignee": "a",
            "deadline": "2099-01-01",
            **changes,
        }
        if "alert_id" in changes:
            body["source"] = "alert"
        response = await live.client.post("/api/rectifications", json=body)
        assert response.status_code == 422, (changes, response.text)
        assert message in response.text, (changes, response.text)

    # The fix report: multipart only, a note, known fields, accepted files.
    as_json = await live.client.post(f"{base}/report", json={"note": "done"})
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["detail"]
    no_note = await live.client.post(
        f"{base}/report", files=report_files(("a.png", png(), "image/png"))
    )
    assert no_note.status_code == 422 and "note" in no_note.json()["detail"]
    wrong_field = await live.client.post(
        f"{base}/report",
        data={"note": "done"},
        files=[("file", ("a.png", png(), "image/png"))],
    )
    assert wrong_field.status_code == 422 and "'files'" in wrong_field.json()["detail"]
    program = await live.client.post(
        f"{base}/report",
        data={"note": "done"},
        files=report_files(("photo.jpg", b"MZ\x90\x00 not a photo", "image/jpeg")),
    )
    assert program.status_code == 415 and "not an accepted type" in program.json()["detail"]
    limit = live.gateway.rectifications.files.limits.max_bytes
    huge = await live.client.post(
        f"{base}/report",
        data={"note": "done"},
        files=report_files(("big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * limit, "image/png")),
    )
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]

    # A request larger than all allowed files together is refused before it is read.
    files = live.gateway.rectifications.files
    real_limits = files.limits
    files.limits = EvidenceLimits(max_bytes=1000, max_files=2)
    try:
        oversized = await live.client.post(
            f"{base}/report",
            data={"note": "done"},
            files=report_files(("big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100_000, "image/png")),
        )
        assert oversized.status_code == 413 and "at most 2 files" in oversized.json()["detail"]
    finally:
        files.limits = real_limits

    # None of that moved the item or left evidence behind.
    detail = (await live.client.get(base)).json()
    assert (detail["state"], detail["evidence"], len(detail["history"])) == ("open", [], 1)

    # A browser form with its file input left empty: the note alone is the report.
    ok = await live.client.post(
        f"{base}/report",
        data={"note": "已清理，无照片"},
        files=report_files(("", b"", "application/octet-stream")),
    )
    assert ok.status_code == 200 and ok.json()["evidence"] == []
    twice = await live.client.post(f"{base}/report", data={"note": "again"})
    assert twice.status_code == 409 and "already reported" in twice.json()["detail"]


async def test_items_cannot_be_deleted(live: LiveGateway) -> None:
    await setup_site(live)
    item = await finding(live)
    for path in ("/api/rectifications", f"/api/rectifications/{item['id']}"):
        assert (await live.client.delete(path)).status_code == 405
    assert (await live.client.get(f"/api/rectifications/{item['id']}")).status_code == 200


async def test_listing_filters_and_the_overdue_clock(live: LiveGateway) -> None:
    await setup_site(live)
    await live.client.post(
        "/api/sites",
        json={
            "id": "house-3",
            "name": "出租屋",
            "village": "新圩社区",
            "industry": "rental_housing",
        },
    )
    soon = await finding(live, deadline="2099-01-01")
    later = await finding(live, deadline="2099-03-01", hazard="wiring")
    rental = await finding(live, site_id="house-3", enterprise="房东", deadline="2099-02-01")

    async def ids(**params: Any) -> list[int]:
        response = await live.client.get("/api/rectifications", params=params)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()]

    # Earliest deadline first: the checklist reads as a to-do list.
    assert await ids() == [soon["id"], rental["id"], later["id"]]
    assert await ids(village="新圩社区") == [rental["id"]]
    assert await ids(site_id="shop-17") == [soon["id"], later["id"]]
    assert await ids(site_id="shop-17", village="新圩社区") == []
    assert await ids(overdue="true") == []
    assert (await live.client.get("/api/rectifications", params={"state": "gone"})).status_code == (
        422
    )

    # Move the book's clock past the first two deadlines.
    real_clock = live.gateway.rectifications.clock
    feb_15 = 4_074_192_000_000  # 2099-02-15 local
    live.gateway.rectifications.clock = lambda: feb_15
    try:
        assert await ids(overdue="true") == [soon["id"], rental["id"]]
        assert await ids(overdue="false") == [later["id"]]
        swept = await live.gateway.rectifications.sweep()
        assert [i.id for i in swept] == [soon["id"], rental["id"]]
        shown = (await live.client.get(f"/api/rectifications/{soon['id']}")).json()
        assert shown["overdue"] is True and shown["overdue_since"] is not None
        assert shown["history"][-1]["action"] == "overdue"
        assert shown["history"][-1]["actor"] == "system"

        stats = (await live.client.get("/api/stats", params={"group_by": "village"})).json()
        groups = {g["key"]: g for g in stats["groups"]}
        assert (
            groups["陂头村"]["rectifications_open"],
            groups["陂头村"]["rectifications_overdue"],
        ) == (
            2,
            1,
        )
        assert groups["新圩社区"]["rectifications_overdue"] == 1
        assert stats["total"]["rectifications_overdue"] == 2
        assert await ids(state="open", overdue="true", village="陂头村") == [soon["id"]]
    finally:
        live.gateway.rectifications.clock = real_clock


async def test_statistics_json_csv_and_false_alarm_sites(live: LiveGateway) -> None:
    await setup_site(live)
    # Seven false smoke alarms from one shop yesterday from noon, town time: more than five
    # a day, and all on one local day whenever the test runs (from "an hour ago" they
    # straddled midnight at 00:54-01:00 Shanghai and split 3 + 4).
    town = ZoneInfo(live.settings.timezone)
    noon = datetime.combine(datetime.now(town).date() - timedelta(days=1), time(12), town)
    start = int(noon.timestamp() * 1000)
    for k in range(7):
        alert_id = await smoke_alarm(live, start + k * 60_000)
        ack = await live.client.post(f"/api/alerts/{alert_id}/ack", json={})
        assert ack.status_code == 200
        close = await live.client.post(
            f"/api/alerts/{alert_id}/close", json={"disposition": Disposition.FALSE_ALARM}
        )
        assert close.status_code == 200

    response = await live.client.get("/api/stats", params={"group_by": "village"})
    assert response.status_code == 200, response.text
    stats = response.json()
    [group] = stats["groups"]
    assert (group["key"], group["alerts"], group["false_alarms"]) == ("陂头村", 7, 7)
    assert group["false_alarm_rate"] == 1.0 and group["false_alarm_site_days"] == 1
    assert group["time_to_acknowledge"]["count"] == 7
    assert stats["sites"][0]["site_id"] == "shop-17"

    by_industry = (await live.client.get("/api/stats", params={"group_by": "industry"})).json()
    assert [g["key"] for g in by_industry["groups"]] == ["small_shop"]

    as_csv = await live.client.get("/api/stats.csv", params={"group_by": "village"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert [r["village"] for r in rows] == ["陂头村", "(total)"]
    row = rows[0]
    assert int(row["alerts"]) == group["alerts"] and int(row["hazard_fire"]) == 7
    assert float(row["false_alarm_rate"]) == group["false_alarm_rate"]
    assert float(row["ack_median_s"]) == group["time_to_acknowledge"]["median_s"]
    sites_csv = await live.client.get("/api/stats.csv", params={"table": "sites"})
    [site_row] = list(csv.DictReader(io.StringIO(sites_csv.content.decode("utf-8-sig"))))
    assert (site_row["site_id"], site_row["false_alarms"], site_row["flagged_days"]) == (
        "shop-17",
        "7",
        "1",
    )

    flagged = (await live.client.get("/api/stats/false-alarms")).json()
    assert flagged["limit"] == 5
    assert [(d["site_id"], d["false_alarms"]) for d in flagged["days"]] == [("shop-17", 7)]
    stricter = await live.client.get("/api/stats/false-alarms", params={"limit": 7})
    assert stricter.json()["days"] == []

    # Bad periods and groupings are refused clearly.
    for params, message in (
        ({"since": "last tuesday"}, "not an ISO 8601"),
        ({"since": "2024-06-30", "until": "2024-06-01"}, "since must be before until"),
        ({"group_by": "street"}, "village"),
    ):
        bad = await live.client.get("/api/stats", params=params)
        assert bad.status_code == 422 and message in bad.text, (params, bad.text)
    old = await live.client.get("/api/stats", params={"since": "2024-06-01", "until": "2024-06-30"})
    assert old.status_code == 200 and old.json()["total"]["alerts"] == 0
