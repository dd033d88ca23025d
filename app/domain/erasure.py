"""Erasure and access for one person (GDPR art. 15 and 17): which person an id names, and which
kept rejected messages carry that person's identifiers. Pure: no I/O.

A person is named as the API shows it: `u:<userId>` or `a:<anonymousId>` (app.domain.person
.person_id_of). Erasure never guesses: a bare id, which the read endpoint resolves, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.domain.normalize import MAX_ID_LENGTH
from app.domain.person import person_ids

CONTACT_KEYS = ("email", "phone")  # the trait / property names searched for a person's contact points
PHONE_MIN_DIGITS = 6


class InvalidPersonId(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PersonRef:
    person_id: str  # 'u:<userId>' or 'a:<anonymousId>'
    user_id: str | None
    anonymous_id: str | None


def parse_person_id(text: str) -> PersonRef:
    """A person id as the API shows it; InvalidPersonId says what is wrong with anything else."""
    user_id, anonymous_id = person_ids(text)
    ident = user_id if user_id is not None else anonymous_id
    if ident is None:
        raise InvalidPersonId("must be 'u:<userId>' or 'a:<anonymousId>', as the API shows person ids")
    if not ident:
        raise InvalidPersonId("the id after 'u:' or 'a:' is empty")
    if len(ident) > MAX_ID_LENGTH:
        raise InvalidPersonId(f"the id is longer than {MAX_ID_LENGTH} characters (no stored id is)")
    if "\x00" in ident:
        raise InvalidPersonId("must not contain NUL characters")
    return PersonRef(text, user_id, anonymous_id)


def _email(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and "@" in value and value.strip() else None


def _phone(value: Any) -> str | None:
    digits = re.sub(r"\D", "", value) if isinstance(value, str) else str(value) if isinstance(value, int) else ""
    return digits if len(digits) >= PHONE_MIN_DIGITS and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Identifiers:
    """What marks a message as a person's: their userId (`u:` persons), the anonymousIds whose
    anonymous events are theirs, and the e-mail addresses and phone numbers their events sent."""

    user_id: str | None
    anonymous_ids: frozenset[str]
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()  # digits only
    phone_texts: frozenset[str] = frozenset()  # as sent, for the prefilter

    def needles(self) -> list[str]:
        """Lower-cased fragments one of which the raw JSON text of a message carrying these
        identifiers contains (a prefilter: `carries` decides)."""
        ids = [i for i in (self.user_id, *self.anonymous_ids) if i]
        texts = [orjson.dumps(t).decode()[1:-1] for t in (*ids, *self.emails, *self.phone_texts)]
        return sorted({t.lower() for t in texts if t})

    def carries(self, raw: Any) -> bool:
        """Does this decoded rejected message name the person (by id, e-mail or phone)?"""
        if not isinstance(raw, Mapping):
            return False
        user = raw.get("userId")
        if self.user_id is not None and _text_id(user) == self.user_id:
            return True
        for key in ("anonymousId", "previousId"):
            if _text_id(raw.get(key)) in self.anonymous_ids:
                return True
        emails, phones = contact_points([raw.get("traits"), _traits_of(raw.get("context")), raw.get("properties")])
        return bool(emails & self.emails or phones & self.phones)


def _text_id(value: Any) -> str | None:
    """An id as ingestion reads it (a string, or an integer: app.domain.normalize)."""
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _traits_of(context: Any) -> Any:
    return context.get("traits") if isinstance(context, Mapping) else None


def contact_points(objects: Iterable[Any]) -> tuple[set[str], set[str]]:
    """E-mail addresses (lower-cased) and phone numbers (digits) under CONTACT_KEYS of these objects."""
    emails: set[str] = set()
    phones: set[str] = set()
    for found in objects:
        if not isinstance(found, Mapping):
            continue
        if (email := _email(found.get("email"))) is not None:
            emails.add(email)
        if (phone := _phone(found.get("phone"))) is not None:
            phones.add(phone)
    return emails, phones


def identifiers_of(
    person: PersonRef, anonymous_ids: Iterable[str], contact_values: Iterable[tuple[str, Any]]
) -> Identifiers:
    """The person's identifiers from their anonymousIds and the (key, value) contact points their
    events carried (key in CONTACT_KEYS)."""
    emails = {e for k, v in contact_values if k == "email" and (e := _email(v)) is not None}
    phone_values = [(v, p) for k, v in contact_values if k == "phone" and (p := _phone(v)) is not None]
    own = set(anonymous_ids) | ({person.anonymous_id} if person.anonymous_id else set())
    return Identifiers(
        user_id=person.user_id, anonymous_ids=frozenset(own), emails=frozenset(emails),
        phones=frozenset(p for _, p in phone_values), phone_texts=frozenset(str(v) for v, _ in phone_values),
    )  # fmt: skip
