"""Writing a formation: what to ask Heroku for after it refused a quantity, and the write
itself, which remembers refusals and settles a lost answer as "maybe applied"."""

from __future__ import annotations

from dataclasses import dataclass

from scaling.adapters.errors import AdapterError
from scaling.services.backends import Backend


@dataclass(frozen=True)
class Refusal:
    """A quantity Heroku refused for good (422) and why; ``quantity`` None forgets it."""

    quantity: int | None
    reason: str = ""


FORGET_REFUSAL = Refusal(None)


def within_refusal(refused: int | None, *, current: int, desired: int) -> tuple[int | None, bool]:
    """What to ask Heroku for after it refused ``refused`` for good (a 422), and whether the
    refusal still stands: (quantity to ask, or None to hold; keep the refusal on record).

    A refused increase is never asked again; while the policy wants it or more, DynoScaler
    asks halfway between what runs and what was refused, so the pair ends up at the most
    Heroku accepts, not stuck where it was. When the policy wants no more than what runs,
    the refusal is forgotten. A refused decrease holds while the policy still wants it."""
    if refused is None:
        return desired, False
    if refused > current:
        if desired < refused:
            return desired, desired > current
        if refused - current <= 1:
            return None, True
        return (current + refused) // 2, True
    if desired <= refused:
        return None, True
    return desired, False


@dataclass(frozen=True)
class Written:
    applied: int | None
    error: AdapterError | None = None
    refusal: Refusal | None = None
    unconfirmed: int | None = None
    note: str = ""


def write_formation(backend: Backend, *, ask: int, current: int) -> Written:
    """Change the formation to ``ask``. A refusal is remembered so it is not asked again; when
    Heroku names what it accepts (a size's dyno limit), that is asked for once, at once."""
    try:
        return Written(applied=backend.scale(ask))
    except AdapterError as exc:
        first = exc
    if not first.permanent:
        return Written(None, first, unconfirmed=ask if first.outcome_unknown else None,
                       note=" — the formation change failed")
    limit = first.accepts_at_most
    if limit is None or not current < limit < ask:
        return Written(None, first, refusal=Refusal(ask, first.message), note=" — the formation change failed")
    note = f" — Heroku refused {ask} ({first.message}); asking for {limit}, the most it accepts"
    refusal = Refusal(limit + 1, first.message)
    try:
        return Written(applied=backend.scale(limit), refusal=refusal, note=note)
    except AdapterError as exc:
        return Written(None, exc, refusal=refusal, unconfirmed=limit if exc.outcome_unknown else None,
                       note=note + " — the formation change failed")
