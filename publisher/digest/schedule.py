"""When the digest goes out and which period it covers: wall-clock times in the site timezone (DST-safe).

Two aware times in one zone compare and subtract as wall clocks in Python, so a send time in the hour the
clocks repeat or skip would be misplaced by an hour: whether a slot has come, and how late it is, are
decided on real (UTC) time, as the service's cron trigger fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..config import Config


def last_slot(cfg: Config, now: datetime) -> datetime:
    """The latest scheduled send time at or before `now`, in the site timezone."""
    local = now.astimezone(cfg.tz)
    at = cfg.digest.send_time
    day = local.date() - timedelta(days=(local.weekday() - cfg.digest.weekday) % 7)
    slot = datetime(day.year, day.month, day.day, at.hour, at.minute, tzinfo=cfg.tz)
    if slot.astimezone(UTC) > local.astimezone(UTC):
        day -= timedelta(days=7)
        slot = datetime(day.year, day.month, day.day, at.hour, at.minute, tzinfo=cfg.tz)
    return slot


def next_slot(cfg: Config, now: datetime) -> datetime:
    """The first scheduled send time after `now`."""
    slot = last_slot(cfg, now)
    day = slot.date() + timedelta(days=7)
    return datetime(day.year, day.month, day.day, slot.hour, slot.minute, tzinfo=cfg.tz)


def late_by(now: datetime, slot: datetime) -> timedelta:
    """How long after `slot` it is at `now`, in real time (negative before it)."""
    return now.astimezone(UTC) - slot.astimezone(UTC)


def period_for(cfg: Config, slot: datetime) -> tuple[datetime, datetime]:
    """The digest period ending at `slot`: the configured number of days before it."""
    day = slot.date() - timedelta(days=cfg.digest.period_days)
    return datetime(day.year, day.month, day.day, slot.hour, slot.minute, tzinfo=cfg.tz), slot


def utc_stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()
