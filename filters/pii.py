"""PII: drop pages dense with personal data, mask what remains (Llama 3 removed PII-heavy pages).

E-mail addresses, phone numbers and IPv4 addresses are counted per document with RE2 regexes over the whole
batch (``pyarrow.compute``, no Python loop). A document with more than ``max_emails`` / ``max_phones`` /
``max_ips`` is rejected (``pii:too_many_emails``, ...); in kept documents every match is replaced by a
placeholder (``<EMAIL>``, ``<PHONE>``, ``<IP>``) and the counters ``emails_masked``, ``phones_masked``,
``ips_masked`` say how many.

Phone numbers are international (``+`` and a country code) or North American (3-3-4 digit groups), so version
strings, dates and port numbers are not taken for phones; an IPv4 address needs four dot-separated octets of at
most 255. A dotted quad that numbers a section is not an address: one that opens a line and is followed by a
dot (a heading or a table of contents entry, ``11.5.1.1. Regras``), follows a section/chapter word
(``Section 11.5.1.1``, ``§ 4.2.1.3``) or is the start of a longer dotted number (``1.2.3.4.5``) is neither
counted nor masked. (Before this rule the Debian handbook lost 18 pages to ``pii:too_many_ips`` for their
section numbers.)

Rejected documents keep their original text (what a reviewer or an ablation that puts them back needs); only
kept documents are masked.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask

EMAIL = r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"
OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"\b{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}\b"
PHONE = (
    r"\+[0-9]{1,3}(?:[ .\-]?\(?[0-9]{1,4}\)?){2,4}[ .\-]?[0-9]{2,4}\b"  # international: +44 20 7946 0958
    r"|\(?\b[0-9]{3}\)?[ .\-][0-9]{3}[ .\-][0-9]{4}\b"  # North American: (415) 555-0132
)

KINDS = (("emails", EMAIL, "<EMAIL>"), ("ips", IPV4, "<IP>"), ("phones", PHONE, "<PHONE>"))

#: Words after which a dotted number is a section number (English, French, Spanish, Portuguese, German, Italian).
SECTION_WORDS = r"section|sections|chapter|chapitre|sección|secciones|capítulo|seção|secção|abschnitt|kapitel|sezione"
_QUAD = rf"({OCTET})\.({OCTET})\.({OCTET})\.({OCTET})"
#: A numbered heading or table-of-contents entry: a line that opens with the number and a dot (``11.5.1.1. Rules``;
#: an address opening a log or hosts line, ``203.0.113.5 - -``, has no dot after it and is still counted).
SECTION_HEADING = rf"(?m)(^[ \t]*){_QUAD}(\.(?:[ \t]|$))"
#: A cross-reference: the number after a section word or the section sign.
SECTION_REFERENCE = rf"(?i)((?:\b(?:{SECTION_WORDS})|§)[ \t]*){_QUAD}\b"
#: The first five parts of a longer dotted number (an address has exactly four).
LONG_DOTTED = r"\b([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)"
#: Stands for a dot of a protected number while the PII patterns run (a private-use character and a Unicode
#: noncharacter: text never legitimately holds the pair, and the dots are restored after).
PROTECTED_DOT = "\ue000\ufdd0"


def protect_section_numbers(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """``text`` with the dots of section numbers and longer dotted numbers replaced by :data:`PROTECTED_DOT`."""
    dot = PROTECTED_DOT
    text = pc.replace_substring_regex(text, SECTION_HEADING, rf"\1\2{dot}\3{dot}\4{dot}\5\6")
    text = pc.replace_substring_regex(text, SECTION_REFERENCE, rf"\1\2{dot}\3{dot}\4{dot}\5")
    return pc.replace_substring_regex(text, LONG_DOTTED, rf"\1{dot}\2{dot}\3{dot}\4{dot}\5")


def restore_section_numbers(text: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.replace_substring(text, PROTECTED_DOT, ".")


@register_stage("pii")
class PiiFilter(LanguageAwareMapStage):
    """Reject documents with more PII than the limits; mask e-mails, phone numbers and IP addresses in the rest."""

    max_emails: int = Field(default=10, ge=0)
    max_phones: int = Field(default=10, ge=0)
    max_ips: int = Field(default=10, ge=0)
    mask: bool = True

    def process_batch(self, batch: pa.Table) -> StageResult:
        original = batch.column(TEXT)
        text = protect_section_numbers(pc.fill_null(original, ""))
        limits = {"emails": self.max_emails, "ips": self.max_ips, "phones": self.max_phones}
        counts = {
            name: pc.count_substring_regex(text, pattern).to_numpy(zero_copy_only=False) for name, pattern, _ in KINDS
        }
        reasons = np.full(batch.num_rows, None, dtype=object)
        for name in ("emails", "phones", "ips"):
            over = (counts[name] > limits[name]) & (reasons == None)  # noqa: E711 - element-wise on objects
            reasons[over] = self.reason(f"too_many_{name}")
        keep = reasons == None  # noqa: E711
        counters: dict[str, int] = {}
        if self.mask:
            for name, pattern, placeholder in KINDS:
                text = pc.replace_substring_regex(text, pattern, placeholder)
                counters[f"{name}_masked"] = int(counts[name][keep].sum())
            masked = restore_section_numbers(text).cast(original.type)
            text = pc.if_else(pa.array(keep), masked, original)  # rejected documents keep their own text
            batch = batch.set_column(batch.schema.get_field_index(TEXT), TEXT, text.cast(pa.large_string()))
        result = split_by_mask(batch, keep, pa.array(reasons.tolist(), pa.string()))
        result.counters = counters
        return result
