"""RFC 6962 / RFC 9162 Merkle trees (chalicelib.domain.merkle), without any database.

The expectations come from two independent sources: the certificate-transparency
test vectors, and a naive recursive reference written straight from RFC 6962
§2.1 (MTH, PATH, PROOF) below, with its own hashing."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.merkle import (
    EMPTY_ROOT,
    Coord,
    Frontier,
    block_coords,
    block_paths,
    consistency_coords,
    consistency_proof,
    extension_coords,
    inclusion_coords,
    inclusion_proof,
    leaf_hash,
    new_perfect_nodes,
    node_hash,
    root_coords,
    root_from,
    verify_consistency,
    verify_inclusion,
)

# --- the reference: RFC 6962 §2.1 transcribed, recursion and all -------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf data."""
    if not d:
        return sha256(b"")
    if len(d) == 1:
        return sha256(b"\x00" + d[0])
    k = split(len(d))
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(d) <= 1:
        return []
    k = split(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    if m == len(d):
        return [] if whole else [mth(d)]
    k = split(len(d))
    if m <= k:
        return [*subproof(m, d[:k], whole), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m <= n; empty when m == 0 (nothing to prove)."""
    return subproof(m, d, True) if m else []


def all_perfect_nodes(d: list[bytes]) -> dict[Coord, bytes]:
    """Every perfect subtree (level, index) of the tree over d, by brute force."""
    out: dict[Coord, bytes] = {}
    level = 0
    while 1 << level <= len(d):
        width = 1 << level
        for i in range(len(d) // width):
            out[(level, i)] = mth(d[i * width:(i + 1) * width])
        level += 1
    return out


# --- RFC 6962 test vectors (certificate-transparency) --------------------------

CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# The node hashes of the 8-leaf tree, level by level (transparency-dev testdata).
CT_LEVELS = [
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
# (0-based leaf index, tree size, audit path)
CT_INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_NODES = {(level, i): bytes.fromhex(h)
            for level, row in enumerate(CT_LEVELS) for i, h in enumerate(row)}


def hexes(values: list[bytes]) -> list[str]:
    return [v.hex() for v in values]


def test_reference_reproduces_the_ct_vectors() -> None:
    """The reference is trusted below only because it matches the published vectors."""
    for n, root in CT_ROOTS.items():
        assert mth(CT_LEAVES[:n]).hex() == root
    assert all_perfect_nodes(CT_LEAVES) == CT_NODES
    for index, size, expected in CT_INCLUSION:
        assert hexes(path(index, CT_LEAVES[:size])) == expected
    for old, new, expected in CT_CONSISTENCY:
        assert hexes(proof(old, CT_LEAVES[:new])) == expected


def test_hash_primitives_on_raw_data() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert leaf_hash(b"").hex() == CT_ROOTS[1]
    assert [leaf_hash(d).hex() for d in CT_LEAVES] == CT_LEVELS[0]
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")).hex() == CT_ROOTS[2]
    for data in (b"", b"\x00", b"x" * 31, b"y" * 32, b"z" * 1000):
        assert leaf_hash(data) == sha256(b"\x00" + data)


def test_module_reproduces_the_ct_vectors_from_raw_leaves() -> None:
    """Leaf data may be of any length, so the vectors run through the module's own
    tree building, root, proof generation and verification."""
    nodes = new_perfect_nodes(0, CT_LEAVES, {})
    assert nodes == CT_NODES
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT and root_from(0, {}) == EMPTY_ROOT
    for n in range(1, 9):
        frontier.append(CT_LEAVES[n - 1])
        assert frontier.size == n
        assert frontier.root().hex() == root_from(n, nodes).hex() == CT_ROOTS[n]
    for index, size, expected in CT_INCLUSION:
        got = inclusion_proof(index, size, nodes)
        assert hexes(got) == expected
        assert verify_inclusion(CT_LEAVES[index], index, size, got, bytes.fromhex(CT_ROOTS[size]))
    for old, new, expected in CT_CONSISTENCY:
        got = consistency_proof(old, new, nodes)
        assert hexes(got) == expected
        assert verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]),
                                  bytes.fromhex(CT_ROOTS[new]), got)


# --- a ledger-shaped tree: leaf data are 32-byte entry hashes -----------------

MAX = 300


@lru_cache(maxsize=1)
def ledger() -> tuple[list[bytes], dict[Coord, bytes]]:
    entries = [sha256(b"entry %d" % seq) for seq in range(1, MAX + 1)]
    return entries, all_perfect_nodes(entries)


def stored(size: int, coords: list[Coord]) -> dict[Coord, bytes]:
    """Exactly the requested nodes, after checking each is complete within `size`
    leaves (a node the database could hold), so a function that reads anything
    it did not announce fails."""
    nodes = ledger()[1]
    for level, index in coords:
        assert (index + 1) << level <= size, (level, index, size)
    assert len(set(coords)) == len(coords)
    return {c: nodes[c] for c in coords}


def bound(n: int) -> int:
    """Stored nodes read by one proof over n leaves, h = ceil(log2 n): at most one
    proof element is a right-edge (non-perfect) subtree, the sibling of a perfect
    subtree of 2^j leaves (j < h) inside which every later step stays. It expands
    into at most j perfect nodes, next to at most j elements below it and h - j
    above it (one more element for a consistency proof): at most 2h, where a plain
    path of perfect siblings would be h."""
    return 2 * math.ceil(math.log2(n)) if n > 1 else 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_inclusion_matches_reference_and_verifies(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX))
    index = data.draw(st.integers(0, size - 1))
    entries = ledger()[0][:size]
    coords = inclusion_coords(index, size)
    assert len(coords) <= bound(size)
    got = inclusion_proof(index, size, stored(size, coords))
    assert got == path(index, entries)
    root = root_from(size, stored(size, root_coords(size)))
    assert root == mth(entries)
    assert verify_inclusion(entries[index], index, size, got, root)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_consistency_matches_reference_and_verifies(data: st.DataObject) -> None:
    new = data.draw(st.integers(0, MAX))
    old = data.draw(st.integers(0, new))
    entries = ledger()[0][:new]
    coords = consistency_coords(old, new)
    assert len(coords) <= bound(new)
    got = consistency_proof(old, new, stored(new, coords))
    assert got == (proof(old, entries) if old < new else [])
    assert verify_consistency(old, new, mth(entries[:old]), mth(entries), got)


def test_coordinate_counts_stay_logarithmic() -> None:
    for n in range(1, 257):
        assert len(root_coords(n)) == n.bit_count()
        assert all(len(inclusion_coords(i, n)) <= bound(n) for i in range(n))
        assert all(len(consistency_coords(m, n)) <= bound(n) for m in range(n + 1))
    for n in (2**20, 2**20 + 1, 2**31 - 1, 10**9 + 7, 2**40 + 12345):
        assert len(root_coords(n)) <= n.bit_length()
        assert len(extension_coords(n)) <= n.bit_length()
        for index in (0, 1, n // 3, n // 2, n - 2, n - 1):
            assert len(inclusion_coords(index, n)) <= bound(n)
        for old in (1, 2, n // 3, n // 2 + 1, n - 1):
            assert len(consistency_coords(old, n)) <= bound(n)


def test_frontier_root_equals_root_from_for_every_size() -> None:
    entries = ledger()[0]
    frontier = Frontier()
    for n in range(1, MAX + 1):
        frontier.append(entries[n - 1])
        assert frontier.size == n
        assert frontier.root() == root_from(n, stored(n, root_coords(n))) == mth(entries[:n])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=70))
def test_frontier_on_arbitrary_leaf_data(leaves: list[bytes]) -> None:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.root() == mth(leaves)
    assert root_from(len(leaves), new_perfect_nodes(0, leaves, {})) == mth(leaves)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=20))
def test_extension_in_chunks_builds_exactly_the_perfect_nodes(chunks: list[int]) -> None:
    entries, everything = ledger()
    table: dict[Coord, bytes] = {}
    size = 0
    for chunk in chunks:
        chunk = min(chunk, MAX - size)
        needed = extension_coords(size)
        assert len(needed) <= max(size.bit_length(), 1)
        added = new_perfect_nodes(size, entries[size:size + chunk], stored(size, needed))
        assert not added.keys() & table.keys()
        assert all((i + 1) << level > size for level, i in added)
        table.update(added)
        size += chunk
    assert table == {c: h for c, h in everything.items() if (c[1] + 1) << c[0] <= size}


# --- audit paths a block of leaves at a time (the bundle export) --------------


def test_block_paths_equal_the_rfc_paths_for_every_leaf_size_and_block() -> None:
    """Every (block width, block, leaf, tree size) up to 70 leaves: the same path as
    the RFC reference, reading only the announced nodes, all above the block."""
    entries = ledger()[0]
    for bits in range(5):
        width = 1 << bits
        for start in range(0, 70, width):
            for size in range(start + 1, 71):
                block = entries[start:min(start + width, size)]
                coords = block_coords(start, bits, size)
                assert all(c[1] << c[0] >= start + width or (c[1] + 1) << c[0] <= start
                           for c in coords), (bits, start, size)
                assert len(coords) <= bound(size)
                wanted = [(i, size) for i in range(start, min(start + width, size))]
                got = block_paths(start, bits, block, wanted, stored(size, coords), bytes)
                assert got == [path(i, entries[:size]) for i, _ in wanted], (bits, start, size)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_block_paths_for_mixed_sizes_in_one_block(data: st.DataObject) -> None:
    """Leaves of one block proven in trees of different sizes (a block cut by a
    closing), with the block's leaves given as far as the chain goes."""
    entries = ledger()[0]
    bits = data.draw(st.integers(0, 7))
    start = data.draw(st.integers(0, (MAX - 1) >> bits)) << bits
    available = data.draw(st.integers(1, min(1 << bits, MAX - start)))
    wanted = data.draw(st.lists(st.integers(start, start + available - 1).flatmap(
        lambda i: st.tuples(st.just(i), st.integers(i + 1, start + available) if
                            available < 1 << bits else st.integers(i + 1, MAX))),
        max_size=20))
    sizes = {size for _, size in wanted}
    nodes: dict[Coord, bytes] = {}
    for size in sizes:
        nodes.update(stored(size, block_coords(start, bits, size)))
    got = block_paths(start, bits, entries[start:start + available], wanted, nodes, bytes)
    assert got == [path(i, entries[:size]) for i, size in wanted]


def test_block_paths_refuse_what_they_cannot_prove() -> None:
    entries, nodes = ledger()
    for call in (
        lambda: block_coords(3, 2, 10),  # not a block boundary
        lambda: block_coords(8, 2, 8),  # the block is outside the tree
        lambda: block_paths(0, 2, entries[:5], [(0, 8)], nodes, bytes),  # 5 leaves in a block of 4
        lambda: block_paths(4, 2, entries[4:8], [(3, 8)], nodes, bytes),  # leaf before the block
        lambda: block_paths(4, 2, entries[4:6], [(4, 8)], nodes, bytes),  # leaves 6 and 7 missing
        lambda: block_paths(4, 2, entries[4:8], [(4, 4)], nodes, bytes),  # leaf outside the tree
        lambda: block_paths(3, 2, entries[4:8], [(4, 8)], nodes, bytes),  # not a block boundary
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError, match="missing"):
        block_paths(0, 2, entries[:4], [(0, 9)], {}, bytes)


# --- attacks: every altered input is rejected ---------------------------------


def flip(value: bytes, position: int = 0) -> bytes:
    position %= len(value)
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1:]


def shape(ranges: list[tuple[int, int]], marks: Mapping[tuple[int, int], object],
          size: int) -> object:
    """The expression a verifier must evaluate to get the root of `size` leaves
    from proof elements: proof positions and marked subtrees are atoms."""
    def expr(start: int, n: int) -> object:
        if (start, n) in marks:
            return marks[(start, n)]
        if (start, n) in ranges:
            return ranges.index((start, n))
        k = split(n)
        return (expr(start, k), expr(start + k, n - k))
    return expr(0, size)


def path_ranges(index: int, size: int, start: int = 0) -> list[tuple[int, int]]:
    if size <= 1:
        return []
    k = split(size)
    if index < k:
        return [*path_ranges(index, k, start), (start + k, size - k)]
    return [*path_ranges(index - k, size - k, start + k), (start, k)]


def proof_ranges(old: int, new: int, start: int = 0, whole: bool = True) -> list[tuple[int, int]]:
    if old == new:
        return [] if whole else [(start, new)]
    k = split(new)
    if old <= k:
        return [*proof_ranges(old, k, start, whole), (start + k, new - k)]
    return [*proof_ranges(old - k, new - k, start + k, False), (start, k)]


def inclusion_shape(index: int, size: int) -> object:
    ranges = path_ranges(index, size)
    return len(ranges), shape(ranges, {(index, 1): "leaf"}, size)


def consistency_shape(old: int, new: int) -> object:
    ranges = proof_ranges(old, new)
    marks = {(0, old): "old"}
    return len(ranges), shape(ranges, marks, old), shape(ranges, marks, new)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_attacks_fail(data: st.DataObject) -> None:
    entries, nodes = ledger()
    size = data.draw(st.integers(1, 70))
    index = data.draw(st.integers(0, size - 1))
    position = data.draw(st.integers(0, 31))
    good = inclusion_proof(index, size, nodes)
    leaf, root = entries[index], mth(entries[:size])
    assert verify_inclusion(leaf, index, size, good, root)
    for i in range(len(good)):
        assert not verify_inclusion(leaf, index, size, [*good[:i], flip(good[i], position),
                                                        *good[i + 1:]], root)
    assert not verify_inclusion(flip(leaf, position), index, size, good, root)
    assert not verify_inclusion(leaf, index, size, good, flip(root, position))
    assert not verify_inclusion(leaf, index, size, [*good, good[-1] if good else root], root)
    if good:
        assert not verify_inclusion(leaf, index, size, good[:-1], root)
        assert not verify_inclusion(leaf, index, size, good[1:], root)
        assert not verify_inclusion(leaf, index, size, good[::-1], root) or len(set(good)) == 1
    # Another index or size fails unless the verifier would evaluate the very same
    # expression: the proof binds (index, size) only as far as the root does.
    for other_index in range(size + 3):
        for other_size in range(1, size + 8):
            if (other_index, other_size) == (index, size) or other_index >= other_size:
                continue
            same = inclusion_shape(other_index, other_size) == inclusion_shape(index, size)
            assert verify_inclusion(leaf, other_index, other_size, good, root) == same


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_attacks_fail(data: st.DataObject) -> None:
    entries = ledger()[0]
    new = data.draw(st.integers(2, 70))
    old = data.draw(st.integers(1, new - 1))
    position = data.draw(st.integers(0, 31))
    good = consistency_proof(old, new, ledger()[1])
    old_root, new_root = mth(entries[:old]), mth(entries[:new])
    assert verify_consistency(old, new, old_root, new_root, good)
    for i in range(len(good)):
        bad = [*good[:i], flip(good[i], position), *good[i + 1:]]
        assert not verify_consistency(old, new, old_root, new_root, bad)
    assert not verify_consistency(old, new, flip(old_root, position), new_root, good)
    assert not verify_consistency(old, new, old_root, flip(new_root, position), good)
    assert not verify_consistency(old, new, new_root, old_root, good)
    assert not verify_consistency(old, new, old_root, new_root, good[:-1])
    assert not verify_consistency(old, new, old_root, new_root, good[1:])
    assert not verify_consistency(old, new, old_root, new_root, [*good, good[-1]])
    assert not verify_consistency(old, new, old_root, new_root, [old_root, *good])
    assert not verify_consistency(old, new, old_root, new_root, [])
    assert not verify_consistency(new, old, new_root, old_root, good)
    for other_old in range(1, new + 5):
        for other_new in range(other_old + 1, new + 6):
            if (other_old, other_new) == (old, new):
                continue
            same = consistency_shape(other_old, other_new) == consistency_shape(old, new)
            assert verify_consistency(other_old, other_new, old_root, new_root, good) == same


def test_size_is_bound_only_through_the_root() -> None:
    """RFC 9162 verifiers cannot tell (index 0, size 3) from (index 0, size 4): the
    paths have the same shape. Callers must take the size from the same signed
    checkpoint as the root; the root alone is never trusted with a free size."""
    entries, nodes = ledger()
    good = inclusion_proof(0, 3, nodes)
    assert verify_inclusion(entries[0], 0, 4, good, mth(entries[:3]))
    assert not verify_inclusion(entries[0], 0, 4, good, mth(entries[:4]))
    assert not verify_inclusion(entries[0], 0, 5, good, mth(entries[:3]))


def test_edge_cases_of_consistency() -> None:
    entries = ledger()[0]
    r5 = mth(entries[:5])
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, flip(r5), [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    assert verify_consistency(0, 5, EMPTY_ROOT, r5, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r5, [r5])
    assert not verify_consistency(0, 5, r5, r5, [])
    assert consistency_proof(0, 5, {}) == [] and consistency_proof(5, 5, {}) == []


MALFORMED: list[Any] = [None, "x", 1.5, -1, b"", [b"\x00" * 32, None], [b"\x00" * 31], b"\x00" * 32]


def test_verifiers_return_false_on_malformed_input() -> None:
    entries, nodes = ledger()
    leaf, good, root = entries[5], inclusion_proof(5, 9, nodes), mth(entries[:9])
    assert verify_inclusion(leaf, 5, 9, good, root)
    for bad in MALFORMED:
        assert not verify_inclusion(bad, 5, 9, good, root) or isinstance(bad, bytes)
        assert not verify_inclusion(leaf, bad, 9, good, root)
        assert not verify_inclusion(leaf, 5, bad, good, root)
        assert not verify_inclusion(leaf, 5, 9, bad, root)
        assert not verify_inclusion(leaf, 5, 9, good, bad)
    for index, size in ((9, 9), (10, 9), (-1, 9), (0, 0)):
        assert not verify_inclusion(leaf, index, size, good, root)
    assert not verify_inclusion(leaf, 5, 9, [*good[:-1], good[-1][:31]], root)
    assert not verify_inclusion(leaf, 5, 9, [*good[:-1], good[-1] + b"\x00"], root)

    old_root, cons = mth(entries[:4]), consistency_proof(4, 9, nodes)
    assert verify_consistency(4, 9, old_root, root, cons)
    for bad in MALFORMED:
        assert not verify_consistency(bad, 9, old_root, root, cons)
        assert not verify_consistency(4, bad, old_root, root, cons)
        assert not verify_consistency(4, 9, bad, root, cons)
        assert not verify_consistency(4, 9, old_root, bad, cons)
        assert not verify_consistency(4, 9, old_root, root, bad)
    assert not verify_consistency(9, 4, root, old_root, cons)
    assert not verify_consistency(-1, 9, old_root, root, cons)
    assert not verify_consistency(4, 9, old_root[:31], root, cons)


# --- input checking of the generating side ------------------------------------


def test_generators_reject_bad_input() -> None:
    nodes = ledger()[1]
    for call in (
        lambda: root_coords(-1),
        lambda: root_from(-1, nodes),
        lambda: inclusion_coords(0, 0),
        lambda: inclusion_coords(5, 5),
        lambda: inclusion_coords(-1, 5),
        lambda: inclusion_proof(5, 5, nodes),
        lambda: consistency_coords(6, 5),
        lambda: consistency_coords(-1, 5),
        lambda: consistency_proof(6, 5, nodes),
        lambda: extension_coords(-1),
        lambda: new_perfect_nodes(-1, [], {}),
    ):
        with pytest.raises(ValueError):
            call()


def test_generators_reject_missing_or_malformed_nodes() -> None:
    nodes = dict(ledger()[1])
    coords = inclusion_coords(3, 11)
    with pytest.raises(ValueError, match="missing"):
        inclusion_proof(3, 11, {c: nodes[c] for c in coords[1:]})
    broken_values: list[Any] = [nodes[coords[0]][:31], nodes[coords[0]] + b"\x00", "a" * 32]
    for broken in broken_values:
        with pytest.raises(ValueError, match="32-byte"):
            inclusion_proof(3, 11, {**nodes, coords[0]: broken})
        with pytest.raises(ValueError, match="32-byte"):
            root_from(11, {**nodes, root_coords(11)[-1]: broken})
        with pytest.raises(ValueError, match="32-byte"):
            new_perfect_nodes(11, [b"x"], {**nodes, extension_coords(11)[0]: broken})
