"""The PHI policy: what of each canonical record a consumer may see, and in what form.

One declarative table, :data:`POLICIES`, says for each (resource type, consumer) pair what
happens to each canonical field path: :class:`Keep`, :class:`Pseudonymize`, :class:`Generalize`,
:class:`Redact` or :class:`Drop`. It is an allow-list: a field the policy does not name never
leaves, so a field a connector adds later stays inside until someone decides about it here.

:func:`minimize` (and :func:`minimize_many` for pages) is the one function that applies the
policy, on every path out of the hub: lookups, jobs, syncs and events. Callers use it before a
record is cached, stored, returned or handed to a task result; nothing else cuts records down.

The consumer is the calling client's product code (``inventory``, ``administration``) or
``operator`` for a tenant's operator clients, which have no product. A missing pair raises
:class:`PolicyMissing`, which callers answer with 403; :func:`require_policy` lets them check
before any downstream call, so no PHI is fetched for a request that could never see it.

Paths are dotted (``patient.mrn``); a list of objects is marked ``[]`` (``movements[].at``).
Every path the policy outputs is present in the result: a value absent or None in the record
comes out as None, so consumers see one stable shape. Each policy is compiled once, at import,
into a plan of small steps, so a record costs a few dict look-ups per field and no path parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from app.phi.boundary import PHI_FIELD_PATHS
from app.phi.pseudonyms import PREFIXES, Pseudonymizer

REDACTED = "[redacted]"
NINETY_PLUS = "90+"
LIST_MARK = "[]"

REFERENCE_TIME_PATH = "administered_at"
"""Ages are taken at the moment of the dose when the record has one, not at the moment of the read."""


# --- actions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keep:
    """Pass the value through unchanged (scalars only, so nothing unnamed rides along inside)."""


@dataclass(frozen=True)
class Pseudonymize:
    """Replace an identifier with its stable tenant pseudonym; ``as_`` names the output path."""

    kind: str
    as_: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PREFIXES:
            raise ValueError(f"unknown pseudonym kind {self.kind!r}; known: {sorted(PREFIXES)}")


GENERALIZATIONS = ("year", "birth_year_or_90_plus")


@dataclass(frozen=True)
class Generalize:
    """Coarsen a date: ``year``, or ``birth_year_or_90_plus`` (HIPAA Safe Harbor ages)."""

    how: Literal["year", "birth_year_or_90_plus"]
    as_: str | None = None

    def __post_init__(self) -> None:
        if self.how not in GENERALIZATIONS:
            raise ValueError(f"unknown generalization {self.how!r}; known: {list(GENERALIZATIONS)}")


@dataclass(frozen=True)
class Redact:
    """Keep the field but replace its value with ``"[redacted]"`` (None stays None)."""


@dataclass(frozen=True)
class Drop:
    """Leave the field out. Same effect as not naming it; written to record a decision."""


Action = Keep | Pseudonymize | Generalize | Redact | Drop


# --- the policies -------------------------------------------------------------------------

_ADMINISTRATION_FOR_READERS: dict[str, Action] = {
    "administration_id": Keep(),
    "unit": Keep(),
    "medication.ndc11": Keep(),
    "medication.name": Keep(),
    "medication.strength": Keep(),
    "dose.quantity": Keep(),
    "dose.unit": Keep(),
    "route": Keep(),
    "administered_at": Keep(),
    "container_barcode": Keep(),
    # Renamed: a pseudonym must not travel under the name of the identifier it replaces.
    "nurse_id": Pseudonymize("staff", as_="nurse_ref"),
    "patient.mrn": Pseudonymize("patient", as_="patient.ref"),
    "patient.birth_date": Generalize("birth_year_or_90_plus", as_="patient.birth_year"),
    "patient.name": Drop(),
    # Free text: it can name anyone and anything, so it never leaves the hub.
    "note": Drop(),
}

_PHARMACY_RECORD_FIELDS: dict[str, Action] = {
    "order_number": Keep(),
    "unit": Keep(),
    "medication.ndc11": Keep(),
    "medication.name": Keep(),
    "medication.strength": Keep(),
    "dose.quantity": Keep(),
    "dose.unit": Keep(),
    "route": Keep(),
    # HL7 PID also carries names, addresses and birth dates: the pharmacy's mapping never reads
    # them into orders or dispenses, and a field the policy does not name never leaves.
    "patient.mrn": Pseudonymize("patient", as_="patient.ref"),
}

_MEDICATION_ORDER_FIELDS: dict[str, Action] = {**_PHARMACY_RECORD_FIELDS, "ordered_at": Keep()}

_DISPENSE_FIELDS: dict[str, Action] = {
    **_PHARMACY_RECORD_FIELDS,
    "dispense_id": Keep(),
    "dispensed_at": Keep(),
    "container_barcode": Keep(),
}

_ADMINISTRATION_AT_REST: dict[str, Action] = {
    **_ADMINISTRATION_FOR_READERS,
    # The hub keeps no birth year of the pharmacy's patients: nothing it does with doses
    # needs one, so nothing is stored that could narrow a patient down.
    "patient.birth_date": Drop(),
}

_CONTAINER_FIELDS: dict[str, Action] = {
    "container_id": Keep(),
    "barcode": Keep(),
    "medication.ndc11": Keep(),
    "medication.name": Keep(),
    "medication.strength": Keep(),
    "lot": Keep(),
    "expires_on": Keep(),
    "location.facility": Keep(),
    "location.unit": Keep(),
    "location.cabinet": Keep(),
    "status": Keep(),
}

_CONTAINER_ORIGIN_FIELDS: dict[str, Action] = {
    **_CONTAINER_FIELDS,
    "movements[].movement_id": Keep(),
    "movements[].type": Keep(),
    "movements[].from_location": Keep(),
    "movements[].to_location": Keep(),
    "movements[].at": Keep(),
}

_CONTAINER_READERS = ("administration", "inventory", "operator")

# --- events -------------------------------------------------------------------------------
# An event is stored once (``EVENT_STORE``) and delivered later to each subscriber. The stored
# form is cut from the canonical record by ``_EVENT_STORE_POLICIES``: the patient becomes the
# tenant pseudonym at most; names, birth dates, free text and staff ids are never
# stored. At delivery the subscriber's own policy (resource type ``<resource>_event``) is
# applied to that stored form, so each subscriber gets only what its consumer may read; no
# policy for its consumer means it is sent the id-only notification instead.

EVENT_STORE = "event_store"
"""The consumer name of the hub's own event table."""

# An event keeps what the hub keeps at rest of the same record: the pharmacy's store and the
# event store are one decision, written once. Only a container's move adds to its reader policy.
_CONTAINER_MOVEMENT_FOR_EVENT_STORE: dict[str, Action] = {
    **_CONTAINER_FIELDS,
    "movement.movement_id": Keep(),
    "movement.type": Keep(),
    "movement.from_location": Keep(),
    "movement.to_location": Keep(),
    "movement.at": Keep(),
}


def _as_stored(rules: dict[str, Action]) -> dict[str, Action]:
    """The subscriber policy that passes a stored event's fields on as they are stored."""
    return {getattr(action, "as_", None) or path: Keep() for path, action in rules.items()
            if not isinstance(action, Drop)}


_EVENT_STORE_POLICIES: dict[str, dict[str, Action]] = {
    # An event outlives the request that made it: even the birth year is left out.
    "administration": _ADMINISTRATION_AT_REST,
    "dispense": _DISPENSE_FIELDS,
    "medication_order": _MEDICATION_ORDER_FIELDS,
    "container_movement": _CONTAINER_MOVEMENT_FOR_EVENT_STORE,
}

# Who may receive a full event payload, by resource: as for lookups, System B (the
# administration product) does not read administrations back through the hub; pharmacy data
# goes to the eMAR, inventory and operators; container moves to every reader of containers.
_EVENT_READERS: dict[str, tuple[str, ...]] = {
    "administration": ("inventory", "operator", "pharmacy"),
    "dispense": ("administration", "inventory", "operator"),
    "medication_order": ("administration", "inventory", "operator"),
    "container_movement": (*_CONTAINER_READERS, "pharmacy"),
}

POLICIES: dict[tuple[str, str], dict[str, Action]] = {
    ("administration", "inventory"): _ADMINISTRATION_FOR_READERS,
    ("administration", "operator"): _ADMINISTRATION_FOR_READERS,
    # No ("administration", "administration"): System B does not read its own data back
    # through the hub, so there is no policy and such a read is refused.
    **{("container", consumer): _CONTAINER_FIELDS for consumer in _CONTAINER_READERS},
    **{("container_origin", consumer): _CONTAINER_ORIGIN_FIELDS for consumer in _CONTAINER_READERS},
    **{(resource, EVENT_STORE): rules for resource, rules in _EVENT_STORE_POLICIES.items()},
    **{(f"{resource}_event", consumer): _as_stored(_EVENT_STORE_POLICIES[resource])
       for resource, consumers in _EVENT_READERS.items() for consumer in consumers},
    # "store" is the hub itself keeping the pharmacy's HL7 records at rest (app.pharmacy):
    # pseudonyms only, never a name, address or birth date.
    ("medication_order", "store"): _MEDICATION_ORDER_FIELDS,
    ("dispense", "store"): _DISPENSE_FIELDS,
    ("administration", "store"): _ADMINISTRATION_AT_REST,
    **{("medication_order", consumer): _MEDICATION_ORDER_FIELDS
       for consumer in _CONTAINER_READERS},
    **{("dispense", consumer): _DISPENSE_FIELDS for consumer in _CONTAINER_READERS},
    # The dispenses lookup reads the hub's own store, already minimized at rest ("store"
    # above): each reader gets what the store keeps, the patient as the tenant pseudonym.
    **{("stored_dispense", consumer): _as_stored(_DISPENSE_FIELDS)
       for consumer in _CONTAINER_READERS},
}
"""(resource type, consumer) → {canonical path: action}. Compiled at import; edit here, not at run time."""


# --- errors -------------------------------------------------------------------------------

class PolicyMissing(LookupError):
    """No PHI policy lets this consumer read this resource type (callers answer 403)."""

    def __init__(self, resource_type: str, consumer: str) -> None:
        super().__init__(f"no PHI policy for {resource_type!r} read by {consumer!r}")
        self.resource_type = resource_type
        self.consumer = consumer


class RecordShapeError(ValueError):
    """A record does not have the shape its policy expects (e.g. an object where a value was).

    The message names the path only, never the value, so it is safe to log.
    """


# --- compiling a policy into a plan ---------------------------------------------------------

_SCALARS = (str, int, float, bool, date, Decimal)


class _Context:
    """What a transform may need besides the value: the tenant's pseudonymizer and a reference date."""

    __slots__ = ("pseudonymizer", "record", "now", "_reference_date")

    def __init__(self, pseudonymizer: Pseudonymizer, record: Mapping, now: datetime | None) -> None:
        self.pseudonymizer = pseudonymizer
        self.record = record
        self.now = now
        self._reference_date: date | None = None

    def reference_date(self, path: str) -> date:
        """The UTC date ages are taken at: the dose's time if the record has one, else now."""
        if self._reference_date is None:
            moment = self.record.get(REFERENCE_TIME_PATH)
            if moment is None:
                moment = self.now or datetime.now(UTC)
            elif not isinstance(moment, datetime):
                try:
                    moment = datetime.fromisoformat(moment)
                except (TypeError, ValueError):
                    raise RecordShapeError(
                        f"{REFERENCE_TIME_PATH}: not a timestamp (needed for {path})") from None
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
            self._reference_date = moment.date()
        return self._reference_date


Transform = Callable[[Any, _Context], Any]


def _as_date(value: Any, path: str) -> date:
    if isinstance(value, date):  # datetime is a date too
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise RecordShapeError(f"{path}: not a date")


def _transform_for(action: Action, path: str) -> Transform:
    """The function that turns an input value into the output value for one path."""
    if isinstance(action, Keep):
        def keep(value: Any, _context: _Context) -> Any:
            # Only scalars: keeping a whole object would let its unnamed fields through.
            if value is None or isinstance(value, _SCALARS):
                return value
            raise RecordShapeError(f"{path}: an object or list where the policy keeps a value")
        return keep

    if isinstance(action, Redact):
        def redact(value: Any, _context: _Context) -> Any:
            return None if value is None else REDACTED
        return redact

    if isinstance(action, Pseudonymize):
        kind = action.kind

        def pseudonymize(value: Any, context: _Context) -> Any:
            if value is None:
                return None
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            elif not isinstance(value, str):
                raise RecordShapeError(f"{path}: not an identifier")
            return context.pseudonymizer.pseudonym(value, kind)
        return pseudonymize

    if isinstance(action, Generalize):
        if action.how == "year":
            def year(value: Any, _context: _Context) -> Any:
                return None if value is None else str(_as_date(value, path).year)
            return year

        def birth_year_or_90_plus(value: Any, context: _Context) -> Any:
            if value is None:
                return None
            born = _as_date(value, path)
            on = context.reference_date(path)
            age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
            # Safe Harbor: ages over 89 are one group, and a birth year would give the age away.
            return NINETY_PLUS if age >= 90 else str(born.year)
        return birth_year_or_90_plus

    raise TypeError(f"{path}: {action!r} is not a PHI policy action")


Step = Callable[[Mapping, dict, _Context], None]


def _reader(path: tuple[str, ...]) -> Callable[[Mapping], Any]:
    if len(path) == 1:
        (key,) = path

        def read_top(record: Mapping) -> Any:
            return record.get(key)
        return read_top

    def read_nested(record: Mapping) -> Any:
        value: Any = record
        for key in path:
            if not isinstance(value, Mapping):
                # A missing or malformed parent reads as missing: nothing beneath it leaks.
                return None
            value = value.get(key)
        return value
    return read_nested


def value_at(record: Mapping, path: tuple[str, ...]) -> Any:
    """Return the value at ``path`` of a canonical record, or None when it (or a parent) is
    missing or not a mapping."""
    return _reader(path)(record)


def _writer(path: tuple[str, ...]) -> Callable[[dict, Any], None]:
    *parents, last = path
    if not parents:
        def write_top(out: dict, value: Any) -> None:
            out[last] = value
        return write_top

    def write_nested(out: dict, value: Any) -> None:
        for key in parents:
            out = out.setdefault(key, {})
        out[last] = value
    return write_nested


def _field_step(source: tuple[str, ...], target: tuple[str, ...], transform: Transform) -> Step:
    read, write = _reader(source), _writer(target)

    def field_step(record: Mapping, out: dict, context: _Context) -> None:
        write(out, transform(read(record), context))
    return field_step


def _list_step(source: tuple[str, ...], target: tuple[str, ...], element_plan: tuple[Step, ...],
               path: str) -> Step:
    read, write = _reader(source), _writer(target)

    def list_step(record: Mapping, out: dict, context: _Context) -> None:
        elements = read(record)
        if elements is None:
            write(out, None)
            return
        if not isinstance(elements, list | tuple):
            raise RecordShapeError(f"{path}: not a list")
        minimized = []
        for element in elements:
            if element is None:
                minimized.append(None)
            elif isinstance(element, Mapping):
                minimized.append(_run(element_plan, element, context))
            else:
                raise RecordShapeError(f"{path}: a list element is not an object")
        write(out, minimized)
    return list_step


def _run(steps: tuple[Step, ...], record: Mapping, context: _Context) -> dict:
    out: dict = {}
    for step in steps:
        step(record, out, context)
    return out


def _segments(path: str) -> list[str]:
    segments = path.split(".")
    for segment in segments:
        name = segment.removesuffix(LIST_MARK)
        if not name or not name.replace("_", "a").isalnum():
            raise ValueError(f"{path!r}: not a canonical field path")
    return segments


def _build(rules: list[tuple[list[str], list[str], Action, str]]) -> tuple[Step, ...]:
    """Steps for rules relative to one object; rules under a ``[]`` become one list step."""
    steps: list[Step] = []
    lists: dict[tuple[str, ...], list[tuple[list[str], list[str], Action, str]]] = {}
    for source, target, action, path in rules:
        marked = next((i for i, segment in enumerate(source) if segment.endswith(LIST_MARK)), None)
        if marked is None:
            if isinstance(action, Drop):
                continue
            steps.append(_field_step(tuple(source), tuple(target), _transform_for(action, path)))
            continue
        prefix = source[:marked + 1]
        if target[:marked + 1] != prefix or len(source) == marked + 1:
            raise ValueError(f"{path!r}: a list path names fields of its elements, and a rename "
                             "keeps the list where it is")
        lists.setdefault(tuple(prefix), []).append(
            (source[marked + 1:], target[marked + 1:], action, path))
    for prefix, element_rules in lists.items():
        element_steps = _build(element_rules)
        if not element_steps:
            continue  # every element field dropped: the list itself is dropped
        names = tuple(segment.removesuffix(LIST_MARK) for segment in prefix)
        steps.append(_list_step(names, names, element_steps, ".".join(prefix)))
    return tuple(steps)


def _check_outputs(targets: list[tuple[str, ...]]) -> None:
    """Refuse two rules writing one output, or one writing inside another's value."""
    seen = set(targets)
    if len(seen) != len(targets):
        raise ValueError("two rules of a policy write the same output path")
    for target in targets:
        for cut in range(1, len(target)):
            if target[:cut] in seen:
                raise ValueError(f"output path {'.'.join(target)!r} lies inside another output")


class MinimizationPlan:
    """A compiled policy: the fixed list of steps that cuts one record down."""

    __slots__ = ("_steps", "output_paths")

    def __init__(self, steps: tuple[Step, ...], output_paths: frozenset[str]) -> None:
        self._steps = steps
        self.output_paths = output_paths

    def apply(self, record: Mapping, *, pseudonymizer: Pseudonymizer,
              now: datetime | None = None) -> dict:
        """Return a new, minimized dict made from ``record`` (which is left as it was)."""
        return _run(self._steps, record, _Context(pseudonymizer, record, now))


def compile_policy(rules: Mapping[str, Action]) -> MinimizationPlan:
    """Check one policy and compile it into a plan.

    The hub applies policies only through :func:`minimize`; this is public so tests and
    validators can check a policy (e.g. a new consumer's) before it goes into :data:`POLICIES`.
    A policy may not keep a PHI path as it is, nor keep an object that holds one.
    """
    compiled: list[tuple[list[str], list[str], Action, str]] = []
    targets: list[tuple[str, ...]] = []
    for path, action in rules.items():
        source = _segments(path)
        target = _segments(getattr(action, "as_", None) or path)
        source_name = path.replace(LIST_MARK, "")
        target_name = ".".join(target).replace(LIST_MARK, "")
        if isinstance(action, Keep) and any(phi == source_name or phi.startswith(source_name + ".")
                                            for phi in PHI_FIELD_PATHS):
            raise ValueError(f"{path!r} is PHI: pseudonymize, generalize, redact or drop it")
        if isinstance(action, Pseudonymize | Generalize) and target_name in PHI_FIELD_PATHS:
            # A consumer reading ``patient.mrn`` would take a pseudonym for the real MRN.
            raise ValueError(f"{path!r}: the changed value needs a name of its own (as_=...)")
        compiled.append((source, target, action, path))
        if not isinstance(action, Drop):
            targets.append(tuple(target_name.split(".")))
    _check_outputs(targets)
    return MinimizationPlan(_build(compiled), frozenset(".".join(target) for target in targets))


_PLANS: dict[tuple[str, str], MinimizationPlan] = {
    key: compile_policy(rules) for key, rules in POLICIES.items()}


# --- applying the policy --------------------------------------------------------------------

def _plan(resource_type: str, consumer: str) -> MinimizationPlan:
    try:
        return _PLANS[(resource_type, consumer)]
    except KeyError:
        raise PolicyMissing(resource_type, consumer) from None


def disclosed_paths(resource_type: str, consumer: str) -> frozenset[str]:
    """The output paths (lists marked ``[]``) whose values the policy passes through unchanged
    (:class:`Keep`) for ``consumer``: the only fields whose values a report about the records
    (a parallel run's differences) may show. Pseudonyms and generalized values are not among
    them: they stand for PHI. Raises :class:`PolicyMissing` for an unknown pair."""
    _plan(resource_type, consumer)
    return frozenset(getattr(action, "as_", None) or path
                     for path, action in POLICIES[(resource_type, consumer)].items()
                     if isinstance(action, Keep))


def require_policy(resource_type: str, consumer: str) -> None:
    """Raise :class:`PolicyMissing` unless ``consumer`` may read ``resource_type`` at all.

    Call it before any downstream call, so a refused read never fetches PHI.
    """
    _plan(resource_type, consumer)


def minimize(resource_type: str, consumer: str, record: Mapping, *, pseudonymizer: Pseudonymizer,
             now: datetime | None = None) -> dict:
    """Return the part of one canonical record that ``consumer`` may see, as a new dict.

    ``now`` is the reference time for ages when the record has no ``administered_at``
    (default: the current UTC time). Raises :class:`PolicyMissing` for an unknown pair.
    """
    return _plan(resource_type, consumer).apply(record, pseudonymizer=pseudonymizer, now=now)


def minimize_many(resource_type: str, consumer: str, records: Iterable[Mapping], *,
                  pseudonymizer: Pseudonymizer, now: datetime | None = None) -> list[dict]:
    """Return :func:`minimize` of each record, in order (one policy look-up for the page)."""
    plan = _plan(resource_type, consumer)
    # One clock reading per page, so records of one page agree on who is 90 or older.
    now = now or datetime.now(UTC)
    return [plan.apply(record, pseudonymizer=pseudonymizer, now=now) for record in records]
