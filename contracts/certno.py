"""GB 11643 resident ID numbers (certno): check character, birth date, sex."""
from __future__ import annotations

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)


def check_char(first17: str) -> str:
    """The check character for the first 17 digits of a certno."""
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def make_certno(admdvs: str, birth_yyyymmdd: str, seq3: int, male: bool) -> str:
    """A valid certno: region, birth date, sequence (odd 17th digit = male)."""
    seq = seq3 % 1000
    if (seq % 2 == 1) != male:
        seq = (seq + 1) % 1000 if seq < 999 else 998
    first17 = f"{admdvs}{birth_yyyymmdd}{seq:03d}"
    return first17 + check_char(first17)


def is_valid(certno: str) -> bool:
    return (len(certno) == 18 and certno[:17].isdigit()
            and certno[17] == check_char(certno[:17]))
