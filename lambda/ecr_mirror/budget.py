"""The pull budget: an upstream's announced pull limit, spent with care and never run into (issue 15).

Pure logic: no httpx, no boto3. The shared view lives in the state table (:class:`BudgetStore`,
``ecr_mirror.store.StateTable``); the registry client feeds :meth:`PullBudget.announce` with every
response and asks :meth:`PullBudget.draw` before every manifest GET.

Which upstreams have a budget
    Those that announce ``ratelimit-limit``/``ratelimit-remaining`` (Docker Hub's ``<n>;w=<seconds>``
    form, docker/docs ``content/manuals/docker-hub/usage/pulls.md``; ecr-facts.md section 8). No
    headers (paid Docker accounts, most registries): no budget, no state-table request, nothing changes.

What counts
    Every manifest GET (by tag or digest) is a pull; HEADs and blob GETs are free. A multi-platform
    image costs 1 (the index) + 1 per child fetched.

The shared view (one state-table item per upstream host, :data:`BUDGET_PK`)
    ``remaining``: pulls the service may still spend (announced, minus reservations not yet settled);
    ``outstanding``: pulls reserved by syncs still running; ``reserve`` is never taken (stack context
    ``pullReserve``, default 10 % of the limit, kept for people pulling by hand from the same address).

    - **take** (:meth:`BudgetStore.budget_take`): ``remaining -= n, outstanding += n`` only if
      ``remaining >= n + reserve`` (a conditional update: two workers never both spend the last pulls);
    - **settle**: when a tag is done, ``outstanding -= reserved, remaining += reserved - spent``;
    - **announce**: an upstream's answer is the truth about pulls spent *before* its request left. It is
      written as ``remaining = announced - outstanding`` only if no sync settled since the request left
      (else a settled tag's pulls could be counted back in), or, when no take happened for
      :data:`QUIET_SECONDS` (nothing in flight), as ``remaining = announced, outstanding = 0``.
      A process writes an announcement only when it moves the view by more than a small step, so an
      unchanged pass (HEADs only) adds no write.

A tag is reserved before it is copied (:meth:`PullBudget.reserve`: 1 + its expected children); each
manifest GET draws from the reservation of the tag being copied (:data:`current`, carried into the
copier's threads by :func:`carry`), and one that would exceed it takes one more from the shared view.
When the view cannot cover it, :class:`~ecr_mirror.errors.PullLimitReached` says when the window is
expected to refill: the tag is ``deferred``.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .errors import ConfigError, PullLimitReached

T = TypeVar("T")

#: state-table partition of the budget items (sort key: the upstream registry host)
BUDGET_PK = "#budget"
#: default reserve: this fraction of the limit is never spent by the service
DEFAULT_RESERVE_FRACTION = 0.10
#: no take for this long (longer than a Lambda invocation): nothing is in flight, an announcement is the whole truth
QUIET_SECONDS = 900
#: when nothing says when the window refills, a deferred tag is looked at again after this long (SQS's longest delay)
DEFAULT_DEFER_SECONDS = 900
#: the pulls a tag is expected to cost when nothing better is known: the index and one child
DEFAULT_TAG_PULLS = 3

#: the reservation of the tag being copied on this thread (see :func:`carry`)
current: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar("ecr_mirror_reservation", default=None)


# ---------------------------------------------------------------- configuration


def parse_reserve(text: str | int | None) -> tuple[float, int | None]:
    """``"10%"`` -> ``(0.10, None)``; ``"5"`` or ``5`` -> ``(0, 5)`` (pulls); empty -> the default 10 %.
    Raises :class:`ConfigError` for anything else (the stack context ``pullReserve`` / ``ECR_MIRROR_PULL_RESERVE``)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return DEFAULT_RESERVE_FRACTION, None
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            fraction = float(raw[:-1]) / 100
            if not 0 <= fraction < 1:
                raise ValueError
            return fraction, None
        pulls = int(raw)
        if pulls < 0:
            raise ValueError
        return 0.0, pulls
    except ValueError as exc:
        raise ConfigError(f"pull reserve {raw!r} is not a percentage (0-99%) or a number of pulls") from exc


#: the slowest host rate accepted (one request every 10 s): below it a cap is a hang, not a limit
MIN_HOST_RATE = 0.1


def parse_host_rates(text: str | None) -> dict[str, float]:
    """``"public.ecr.aws=1, quay.io=5"`` -> ``{"public.ecr.aws": 1.0, "quay.io": 5.0}`` (requests per second;
    ``ECR_MIRROR_HOST_RATES``, stack context ``hostRates``). Raises :class:`ConfigError` naming the bad entry."""
    rates: dict[str, float] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        host, sep, value = entry.partition("=")
        try:
            rate = float(value)
            if not sep or not host.strip() or not MIN_HOST_RATE <= rate < math.inf:
                raise ValueError
        except ValueError as exc:
            raise ConfigError(f"host rate {entry.strip()!r} is not host=<requests per second, at least "
                              f"{MIN_HOST_RATE}>") from exc
        rates[host.strip().lower()] = rate
    return rates


#: documented request-rate caps: host -> (anonymous, authenticated) requests per second
#: (public.ecr.aws: 1 pull/s anonymous, 10/s authenticated; ecr-facts.md section 4)
DEFAULT_HOST_RATES: dict[str, tuple[float, float]] = {"public.ecr.aws": (1.0, 10.0)}


# ---------------------------------------------------------------- the shared view


@dataclass(frozen=True)
class Allowance:
    """A budget item: ``host``'s pulls as the service sees them. Times are Unix seconds.

    ``limit`` pulls per ``window_seconds``; ``remaining`` (see the module docstring) and ``outstanding``
    (reserved by running syncs); ``announced_at``: the last announcement written; ``last_take_at``/
    ``last_settle_at``: the last take and settle; ``refill_at``: when the window is expected to give
    pulls back (``announced_at + window``: Docker Hub's window is rolling, so this is conservative);
    ``source``: ``docker-ratelimit-source`` (shown only).
    """

    host: str
    limit: int
    window_seconds: float
    remaining: int
    outstanding: int = 0
    announced_at: float = 0.0
    last_take_at: float = 0.0
    last_settle_at: float = 0.0
    refill_at: float | None = None
    source: str | None = None

    def to_item(self) -> dict[str, Any]:
        """The state-table attributes (keys not included); None fields left out."""
        return {k: v for k, v in vars(self).items() if v is not None and k != "host"}

    @classmethod
    def from_item(cls, host: str, item: Mapping[str, Any]) -> Allowance:
        """Read a budget item (numbers may be Decimals); a malformed number reads as 0."""

        def num(name: str, default: float = 0.0) -> float:
            value = item.get(name)
            try:
                return float(value) if value is not None and not isinstance(value, bool) else default
            except (TypeError, ValueError):
                return default

        refill = item.get("refill_at")
        source = item.get("source")
        return cls(
            host=host, limit=int(num("limit")), window_seconds=num("window_seconds"), remaining=int(num("remaining")),
            outstanding=int(num("outstanding")), announced_at=num("announced_at"), last_take_at=num("last_take_at"),
            last_settle_at=num("last_settle_at"), refill_at=num("refill_at") if refill is not None else None,
            source=source if isinstance(source, str) else None,
        )


class BudgetStore(Protocol):
    """Where the shared view lives (``ecr_mirror.store.StateTable``). Every write is one conditional UpdateItem."""

    def budget_get(self, host: str) -> Allowance | None:
        """The item of ``host``, or None."""
        ...

    def budget_take(self, host: str, pulls: int, reserve: int, now: float) -> int | None:
        """``remaining -= pulls`` (and ``outstanding += pulls``) if ``remaining >= pulls + reserve``;
        the remaining after, or None when the condition failed."""
        ...

    def budget_settle(self, host: str, reserved: int, spent: int, now: float) -> None:
        """A reservation is over: ``outstanding -= reserved``, ``remaining += reserved - spent``."""
        ...

    def budget_announce(self, allowance: Allowance, *, started: float, quiet_before: float) -> int | None:
        """Write an announcement (``allowance.remaining`` as announced) by the rules of the module docstring;
        the view's remaining after, or None when neither condition held (nothing written)."""
        ...


# ---------------------------------------------------------------- reservations


@dataclass
class Reservation:
    """Pulls taken for one tag's copy: ``reserved`` taken from the shared view, ``spent`` drawn so far."""

    budget: PullBudget
    host: str
    reserved: int
    spent: int = 0
    settled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def draw(self) -> None:
        """One manifest GET: from the reservation, else one more pull taken from the shared view.
        Raises :class:`PullLimitReached` when it cannot be."""
        with self._lock:
            if self.spent < self.reserved:
                self.spent += 1
                self.budget._count(self.host)
                return
        self.budget._take(self.host, 1)  # raises when the view cannot cover it
        with self._lock:
            self.reserved += 1
            self.spent += 1
        self.budget._count(self.host)

    def settle(self) -> None:
        """Give back what was not spent (once; later calls do nothing)."""
        with self._lock:
            if self.settled:
                return
            self.settled = True
            reserved, spent = self.reserved, self.spent
        self.budget._settle(self.host, reserved, spent)

    def __enter__(self) -> Reservation:
        self._token = current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        current.reset(self._token)
        self.settle()


def carry(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` wrapped to run under this thread's current reservation (for work handed to a thread pool:
    pool threads do not inherit context variables)."""
    reservation = current.get()
    if reservation is None:
        return fn

    def run(*args: Any, **kwargs: Any) -> T:
        token = current.set(reservation)
        try:
            return fn(*args, **kwargs)
        finally:
            current.reset(token)

    return run


# ---------------------------------------------------------------- the process's budget


@dataclass
class _Known:
    """What this process knows of one host: the last view it read or wrote, and what it last announced."""

    limit: int
    window: float
    remaining: int  # the shared view's remaining as last seen by this process
    announced: int | None = None
    refill_at: float | None = None
    source: str | None = None


class PullBudget:
    """The pull budget of one process (one per Lambda container or CLI run), over a :class:`BudgetStore`.

    ``reserve``: the reserve setting (:func:`parse_reserve`); ``clock``: Unix seconds (injectable);
    ``step``: an announcement moving the view by at most this fraction of the limit is not written.
    ``spent``/``remaining``: per host, the pulls this process drew and the view's remaining as last seen
    (the ``PullsSpent``/``PullsRemaining`` metrics). Thread-safe.
    """

    def __init__(self, store: BudgetStore, *, reserve: tuple[float, int | None] = (DEFAULT_RESERVE_FRACTION, None),
                 clock: Callable[[], float] = time.time, step: float = 0.05) -> None:
        self.store = store
        self.reserve_setting = reserve
        self.clock = clock
        self.step = step
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self.spent: dict[str, int] = {}

    # -- what is known

    def budgeted(self, host: str) -> bool:
        """Whether ``host`` announced a pull limit to this process."""
        with self._lock:
            return host in self._known

    def reserve_of(self, limit: int) -> int:
        """Pulls kept back of a window of ``limit``."""
        fraction, pulls = self.reserve_setting
        return min(limit, pulls) if pulls is not None else math.ceil(limit * fraction)

    def remaining(self) -> dict[str, int]:
        """``{host: remaining}`` as last seen, for every budgeted host."""
        with self._lock:
            return {h: k.remaining for h, k in self._known.items()}

    def refill_at(self, host: str) -> float:
        """When ``host``'s window is expected to give pulls back (now + :data:`DEFAULT_DEFER_SECONDS` if unknown)."""
        with self._lock:
            known = self._known.get(host)
        if known is not None and known.refill_at is not None and known.refill_at > self.clock():
            return known.refill_at
        if known is not None and known.window:
            return self.clock() + known.window
        return self.clock() + DEFAULT_DEFER_SECONDS

    # -- announcements (every response)

    def announce(self, host: str, limit: int | None, remaining: int, window: float | None, started: float,
                 source: str | None = None) -> None:
        """An upstream answered with its pull allowance (``remaining`` of ``limit`` per ``window`` seconds) to a
        request that left at ``started``. Writes it to the shared view when it moves the view by more than
        the step (or the first time this process hears of the host and the view disagrees)."""
        now = self.clock()
        with self._lock:
            known = self._known.get(host)
        if known is None:
            stored = self.store.budget_get(host)
            with self._lock:
                known = self._known.setdefault(host, _Known(
                    limit=stored.limit if stored else (limit or remaining), window=stored.window_seconds if stored else (window or 0),
                    remaining=stored.remaining if stored else -1, refill_at=stored.refill_at if stored else None,
                    source=stored.source if stored else source))
        lim = limit if limit is not None else known.limit
        win = window if window is not None else known.window
        step = max(1, math.floor(lim * self.step))
        with self._lock:
            known.limit, known.window = lim or known.limit, win or known.window
            if source:
                known.source = source
            if known.announced is None:
                moved = known.remaining < 0 or abs(remaining - known.remaining) > step
            else:
                moved = abs(remaining - known.announced) > step
            known.announced = remaining
            if not moved:
                return
        low = remaining <= self.reserve_of(lim) + DEFAULT_TAG_PULLS
        refill = now + win if win and low else None
        allowance = Allowance(host, lim, win, remaining, announced_at=now, refill_at=refill, source=known.source)
        written = self.store.budget_announce(allowance, started=started, quiet_before=now - QUIET_SECONDS)
        if written is not None:
            with self._lock:
                known.remaining = written
                known.refill_at = refill

    # -- spending

    def reserve(self, host: str, pulls: int) -> Reservation | None:
        """Reserve ``pulls`` on ``host`` for one tag (None when ``host`` has no budget: nothing to reserve).
        Raises :class:`PullLimitReached` when the shared view cannot cover them and the reserve."""
        if not self.budgeted(host):
            return None
        pulls = max(1, pulls)
        self._take(host, pulls)
        return Reservation(self, host, pulls)

    def draw(self, host: str) -> None:
        """Before a manifest GET to ``host``: from the current reservation, else one pull from the shared view.
        Nothing for a host without a budget. Raises :class:`PullLimitReached`."""
        if not self.budgeted(host):
            return
        reservation = current.get()
        if reservation is not None and reservation.host == host and not reservation.settled:
            reservation.draw()
            return
        self._take(host, 1)
        self._settle(host, 1, 1)
        self._count(host)

    def _count(self, host: str) -> None:
        with self._lock:
            self.spent[host] = self.spent.get(host, 0) + 1

    def _take(self, host: str, pulls: int) -> None:
        with self._lock:
            known = self._known[host]
            reserve = self.reserve_of(known.limit)
        left = self.store.budget_take(host, pulls, reserve, self.clock())
        if left is None:
            stored = self.store.budget_get(host)
            with self._lock:
                if stored is not None:
                    known.remaining = stored.remaining
                    known.refill_at = stored.refill_at or known.refill_at
                view = known.remaining
            refill = self.refill_at(host)
            raise PullLimitReached(
                f"pull budget of {host}: {view} pulls left, {reserve} kept in reserve, {pulls} needed; "
                f"the window refills by {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(refill))}",
                host=host, retry_at=refill, remaining=view, reserve=reserve,
            )
        with self._lock:
            known.remaining = left

    def _settle(self, host: str, reserved: int, spent: int) -> None:
        self.store.budget_settle(host, reserved, spent, self.clock())
        with self._lock:
            known = self._known.get(host)
            if known is not None:
                known.remaining += reserved - spent


def expected_pulls(children: int | None) -> int:
    """Pulls a tag's copy is expected to cost: the index and each child (``children``: recorded or
    counted; None: :data:`DEFAULT_TAG_PULLS`)."""
    return DEFAULT_TAG_PULLS if children is None else 1 + max(0, children)


# ---------------------------------------------------------------- request-rate caps


class HostPacer:
    """A token bucket per host holding one token: requests to a host at least ``1 / rate`` seconds apart, so
    never more than ``rate`` in any second.

    Rates: ``configured`` (``{host: requests per second}``), else the documented caps of
    :data:`DEFAULT_HOST_RATES` (anonymous or authenticated as ``authenticated(host)`` says, asked once per
    host, when it is first contacted), else ``default(host)``; a host with no rate (None) is not held back. ``sleep``: waits (the client's
    interruptible sleep, so Ctrl-C ends them); ``clock``: monotonic seconds. Thread-safe.
    """

    def __init__(self, configured: Mapping[str, float], *, authenticated: Callable[[str], bool] = lambda host: False,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 default: Callable[[str], float | None] = lambda host: None) -> None:
        self.configured = {h.lower(): float(r) for h, r in configured.items()}
        self.default = default
        self.authenticated = authenticated
        self.sleep = sleep
        self.clock = clock
        self._lock = threading.Lock()
        self._rates: dict[str, float | None] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # host -> (tokens, at)

    def rate(self, host: str) -> float | None:
        """Requests per second allowed to ``host`` (None: no cap)."""
        host = host.lower()
        with self._lock:
            if host in self._rates:
                return self._rates[host]
        rate = self.configured.get(host)
        if rate is None and host in DEFAULT_HOST_RATES:
            anonymous, authenticated = DEFAULT_HOST_RATES[host]
            rate = authenticated if self.authenticated(host) else anonymous
        if rate is None:
            rate = self.default(host)
        with self._lock:
            self._rates[host] = rate
        return rate

    def __call__(self, host: str) -> None:
        rate = self.rate(host)
        if rate is None:
            return
        burst = 1.0
        while True:
            with self._lock:
                now = self.clock()
                tokens, at = self._tokens.get(host, (burst, now))
                tokens = min(burst, tokens + (now - at) * rate)
                if tokens >= 1 - 1e-9:  # (a float's rounding must not make a wait of nothing, forever)
                    self._tokens[host] = (max(0.0, tokens - 1), now)
                    return
                self._tokens[host] = (tokens, now)
                wait = (1 - tokens) / rate
            self.sleep(wait)


__all__ = ["Allowance", "BUDGET_PK", "BudgetStore", "DEFAULT_HOST_RATES", "HostPacer", "PullBudget", "Reservation",
           "carry", "current", "expected_pulls", "parse_host_rates", "parse_reserve"]
