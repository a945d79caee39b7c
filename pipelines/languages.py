"""The language codes a recipe may name: the 176 labels of fastText's lid.176 model (ISO 639 codes, plus a few
of its own such as ``als``, ``bh``, ``eml``, ``nah``, ``sh``).

``languages: [english]`` or ``only_languages: [klingon]`` in a recipe can only be a mistake: such a stage would
silently keep nothing or do nothing. Validation checks every language a recipe names against this set.
Listed here (not read from the model) so that validating a recipe loads no model.
"""

from __future__ import annotations

LID176_LANGUAGES: frozenset[str] = frozenset(
    """
    af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy
    da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy
    ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min
    mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm
    ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep
    vi vls vo wa war wuu xal xmf yi yo yue zh
    """.split()  # noqa: SIM905 (a block of codes reads better than 176 quoted strings)
)


def check_languages(languages: list[str] | None, field: str) -> list[str] | None:
    """``languages`` if every code is a lid.176 label, else a ValueError naming the unknown ones."""
    if languages is None:
        return None
    unknown = sorted(set(languages) - LID176_LANGUAGES)
    if unknown:
        raise ValueError(
            f"{field}: unknown language code(s) {unknown}; use lid.176 codes such as en, de, fr, ja, zh (ISO 639)"
        )
    return languages
