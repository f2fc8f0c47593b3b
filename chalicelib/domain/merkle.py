"""RFC 6962 / RFC 9162 Merkle trees over a tenant's ledger (standard library only).

Leaf i (0-based) is ledger entry seq i+1; its leaf data is that entry's 32-byte
hash. RFC 6962 §2.1 hashing, SHA-256 with domain separation (a leaf can never
pass for an interior node): leaf = H(0x00 || data), node = H(0x01 || l || r),
empty root = H(""). A tree of n > 1 leaves splits at k, the largest power of 2 < n.

Storage model: only roots of *perfect* subtrees are stored, at (level, index):
node (L, i) covers leaves [i·2^L, (i+1)·2^L), level 0 holds the leaf hashes. Any
subtree of an RFC 6962 tree is perfect or on the right edge, and a right-edge
one is the right fold of at most log2(n) perfect ones. Hence two phases: a
`*_coords` function names the O(log n) stored nodes an operation needs, and the
operation then computes from a mapping holding them; nothing loads the tree.

An offline verifier imports this file with only the standard library: keep it so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import TypeVar

Coord = tuple[int, int]
"""(level, index) of a perfect subtree's root: leaves [index·2^level, (index+1)·2^level)."""
Range = tuple[int, int]  # (first leaf, number of leaves) of a subtree of an RFC 6962 tree

T = TypeVar("T")

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash; the 0x00 prefix keeps leaves apart from nodes."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash (0x01 prefix)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- which subtrees: arithmetic on sizes only -----------------------------------
def _check(old: int, new: int, strict: bool = False) -> None:
    """0 <= old <= new (old < new if strict) or ValueError: sizes, or an index and a size."""
    if not (isinstance(old, int) and isinstance(new, int) and 0 <= old <= new):
        raise ValueError(f"need 0 <= {old!r} <= {new!r}")
    if strict and old == new:
        raise ValueError(f"leaf index {old} is outside a tree of {new} leaves")


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2), RFC 6962 §2.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_coords(start: int, size: int) -> list[Coord]:
    """The perfect subtrees, left to right, whose right fold is MTH(D[start:start+size]):
    the binary digits of size from the highest, as each RFC split peels off the largest
    power of two on the left."""
    coords, offset = [], start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            coords.append((level, offset >> level))
            offset += 1 << level
    return coords


def _path_ranges(index: int, size: int) -> list[Range]:
    """The subtrees of PATH(index, D[0:size]) (RFC 6962 §2.1.1), leaf upward."""
    _check(index, size, strict=True)
    ranges, start, n, m = [], 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            ranges.append((start + k, n - k))
            n = k
        else:
            ranges.append((start, k))
            start, n, m = start + k, n - k, m - k
    return ranges[::-1]


def _proof_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees of PROOF(old_size, D[0:new_size]) (RFC 6962 §2.1.2), in RFC order;
    none when old_size is 0 or new_size (nothing to prove)."""
    _check(old_size, new_size)
    ranges, start, n, m, whole = [], 0, new_size, old_size, True
    while 0 < m < n:
        k = _split(n)
        if m <= k:
            ranges.append((start + k, n - k))
            n = k
        else:
            ranges.append((start, k))
            start, n, m, whole = start + k, n - k, m - k, False
    if not whole:  # SUBPROOF(m, D[m], false) = [MTH(D[m])]
        ranges.append((start, n))
    return ranges[::-1]


def root_coords(size: int) -> list[Coord]:
    """The perfect subtrees (left to right) whose right fold is the root of `size` leaves."""
    _check(0, size)
    return _range_coords(0, size)


def inclusion_coords(index: int, size: int) -> list[Coord]:
    """The stored nodes that `inclusion_proof(index, size, ...)` reads."""
    return [c for r in _path_ranges(index, size) for c in _range_coords(*r)]


def consistency_coords(old_size: int, new_size: int) -> list[Coord]:
    """The stored nodes that `consistency_proof(old_size, new_size, ...)` reads."""
    return [c for r in _proof_ranges(old_size, new_size) for c in _range_coords(*r)]


def extension_coords(old_size: int) -> list[Coord]:
    """The stored nodes `new_perfect_nodes(old_size, ...)` reads: `root_coords(old_size)`.
    A complete node whose parent is incomplete is one of these maximal perfect
    subtrees, so they are the only left siblings new leaves can ever combine with."""
    return root_coords(old_size)


# --- hashes from stored nodes -------------------------------------------------
def _node(nodes: Mapping[Coord, bytes], coord: Coord) -> bytes:
    value = nodes.get(coord)
    if value is None:
        raise ValueError(f"node {coord} is missing")
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"node {coord} is not a {HASH_SIZE}-byte hash")
    return value


def _fold(hashes: list[bytes]) -> bytes:
    """Right fold of adjacent subtree roots (largest first): the RFC 6962 hash of their
    union, or the empty root."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _range_hash(r: Range, nodes: Mapping[Coord, bytes]) -> bytes:
    return _fold([_node(nodes, c) for c in _range_coords(*r)])


def root_from(size: int, nodes: Mapping[Coord, bytes]) -> bytes:
    """MTH of the first `size` leaves, from the nodes named by `root_coords(size)`."""
    return _fold([_node(nodes, c) for c in root_coords(size)])


def inclusion_proof(index: int, size: int, nodes: Mapping[Coord, bytes]) -> list[bytes]:
    """RFC 6962 audit path PATH(index, D[0:size]), leaf upward."""
    return [_range_hash(r, nodes) for r in _path_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, nodes: Mapping[Coord, bytes]) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[0:new_size]); empty if old_size is 0 or new_size."""
    return [_range_hash(r, nodes) for r in _proof_ranges(old_size, new_size)]


# --- verification (RFC 9162): never raises, False on anything malformed ---------
def _well_formed(proof: Sequence[bytes], *hashes: bytes) -> bool:
    if not isinstance(proof, Sequence):
        return False
    every = (*proof, *hashes)  # map over builtins: checked at C speed, once per proof
    return all(map(isinstance, every, repeat(bytes))) and set(map(len, every)) <= {HASH_SIZE}


def verify_inclusion(leaf_data: bytes, index: int, size: int,
                     proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: is `leaf_data` (an entry hash) leaf `index` of the tree of
    `size` leaves with this root? The proof binds the size only through the root, so
    size and root must come from the same authenticated checkpoint."""
    if not (isinstance(leaf_data, bytes) and isinstance(index, int) and isinstance(size, int)
            and 0 <= index < size and _well_formed(proof, root)):
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf_data)
    for p in proof:  # node_hash inlined: the offline verifier checks a proof per entry
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?
    Equal sizes need an empty proof and equal roots; old size 0 an empty proof and the
    empty root."""
    if not (isinstance(old_size, int) and isinstance(new_size, int)
            and 0 <= old_size <= new_size and _well_formed(proof, old_root, new_root)):
        return False
    if old_size == 0 or old_size == new_size:
        expected = EMPTY_ROOT if old_size == 0 else new_root
        return len(proof) == 0 and old_root == expected
    if len(proof) == 0:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


# --- growing the tree -----------------------------------------------------------
class Frontier:
    """Incremental RFC 6962 root in O(log n) memory, for streaming verification: keeps
    only the roots of the maximal perfect subtrees, those of `root_coords(size)`."""

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, data: bytes) -> None:
        """Add the next leaf; `data` is the entry hash (leaf_hash is applied here).
        `_push` without the list of completed nodes: this runs once per entry verified."""
        if not isinstance(data, bytes):
            raise ValueError("leaf data must be bytes")
        index, node, stack = self._size, _sha256(b"\x00" + data).digest(), self._stack
        while index & 1:  # a right child: its left sibling is the top of the stack
            node = _sha256(b"\x01" + stack.pop() + node).digest()
            index >>= 1
        stack.append(node)
        self._size += 1

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves so far (the same as `root_from`)."""
        return _fold(self._stack)

    def _push(self, data: bytes) -> list[tuple[Coord, bytes]]:
        """Append a leaf; return the perfect nodes it completes, level 0 upward."""
        if not isinstance(data, bytes):
            raise ValueError("leaf data must be bytes")
        index, node = self._size, leaf_hash(data)
        completed, level = [((0, index), node)], 0
        while index & 1:  # a right child: its left sibling is the top of the stack
            node = node_hash(self._stack.pop(), node)
            level, index = level + 1, index >> 1
            completed.append(((level, index), node))
        self._stack.append(node)
        self._size += 1
        return completed


def new_perfect_nodes(old_size: int, leaves: Sequence[bytes],
                      nodes: Mapping[Coord, bytes]) -> dict[Coord, bytes]:
    """Every perfect-subtree node completed by appending `leaves` (entry hashes) to a
    tree of `old_size` leaves: what sealing adds to the node table. Reads only
    `extension_coords(old_size)` from `nodes`."""
    frontier = Frontier()
    frontier._stack = [_node(nodes, c) for c in extension_coords(old_size)]
    frontier._size = old_size
    return {coord: value for data in leaves for coord, value in frontier._push(data)}


# --- audit paths for a block of consecutive leaves --------------------------------
def _upper_siblings(start: int, bits: int, size: int) -> list[Range]:
    """The siblings, leaf upward, of the ancestors at levels >= `bits` of the block of
    2^bits leaves at `start` in a tree of `size` leaves: the part of the audit path
    that every leaf of the block shares. An ancestor on the right edge with no right
    sibling has none at that level (RFC 6962 promotes it)."""
    ranges, last, level = [], size - 1, bits
    while last >> level:
        ancestor = start >> level
        if ancestor & 1:
            ranges.append(((ancestor - 1) << level, 1 << level))
        elif ancestor < last >> level:
            first = (ancestor + 1) << level
            ranges.append((first, min(1 << level, size - first)))
        level += 1
    return ranges


def _check_block(start: int, bits: int, size: int) -> None:
    _check(start, size, strict=True)
    if not (isinstance(bits, int) and bits >= 0 and start % (1 << bits) == 0):
        raise ValueError(f"a block of 2^{bits!r} leaves cannot start at leaf {start}")


def block_coords(start: int, bits: int, size: int) -> list[Coord]:
    """The stored nodes that `block_paths` reads for the block of 2^bits leaves at
    `start` (a multiple of 2^bits) in a tree of `size` leaves: only the siblings
    above the block, O(log size), whatever the number of paths asked."""
    _check_block(start, bits, size)
    return [c for r in _upper_siblings(start, bits, size) for c in _range_coords(*r)]


def block_paths(start: int, bits: int, leaf_data: Sequence[bytes],
                wanted: Sequence[tuple[int, int]], nodes: Mapping[Coord, bytes],
                encode: Callable[[bytes], T]) -> list[list[T]]:
    """The audit paths PATH(index, D[0:size]) of every (index, size) in `wanted`,
    each index a leaf of the block of 2^bits leaves at `start`, whose leaf data
    (entry hashes) `leaf_data` holds from `start` on: the whole block, or at least
    up to every size asked. The levels inside the block are hashed here from
    `leaf_data`; the ones above read `block_coords(start, bits, size)` from `nodes`.
    The same paths as `inclusion_proof`, made for a block at a time in O(2^bits +
    log size) memory and O(log size) reads per block rather than per path. Each
    hash is given as `encode(hash)`, called once per node rather than per path."""
    width, available = 1 << bits, len(leaf_data)
    if available > width:
        raise ValueError(f"{available} leaves do not fit a block of {width}")
    hashes = [[leaf_hash(data) for data in leaf_data]]
    while len(hashes[-1]) > 1:
        below = hashes[-1]
        hashes.append([node_hash(below[k], below[k + 1]) for k in range(0, len(below) - 1, 2)])
    levels = [[encode(h) for h in level] for level in hashes]
    upper: dict[int, list[T]] = {}
    edges: dict[int, list[T]] = {}
    lower = list(enumerate(levels[:bits]))  # the levels under the block's root
    paths = []
    for index, size in wanted:
        above = upper.get(size)
        if above is None:  # the first path in a tree of this size
            _check_block(start, bits, size)
            if size - start > available and available < width:
                raise ValueError(f"leaf {start + available} of the tree of {size} is missing")
            above = upper[size] = [encode(_range_hash(r, nodes))
                                   for r in _upper_siblings(start, bits, size)]
        if not start <= index < min(size, start + available):
            raise ValueError(f"leaf {index} is not in both the block at {start} and the tree "
                             f"of {size}")
        local = index - start
        if size - start >= width:  # the block is whole in the tree: every sibling is complete
            path = [level[(local >> height) ^ 1] for height, level in lower]
        else:
            edge = edges.get(size)
            if edge is None:
                edge = edges[size] = [encode(h)
                                      for h in _right_edge(hashes, size - start, bits)]
            path, last = [], size - start - 1
            for height, level in lower:
                if not last >> height:
                    break
                sibling, end = (local >> height) ^ 1, last >> height
                if sibling < end:
                    path.append(level[sibling])
                elif sibling == end:
                    path.append(edge[height])
        path += above
        paths.append(path)
    return paths


def _right_edge(levels: list[list[bytes]], inside: int, bits: int) -> list[bytes]:
    """The hash, at each level below `bits`, of the block's last node in a tree that
    ends `inside` leaves into it (a perfect subtree, or the fold of those at its right)."""
    last, edge = inside - 1, [levels[0][inside - 1]]
    for level in range(bits - 1):
        end = last >> level
        edge.append(node_hash(levels[level][end - 1], edge[-1]) if end & 1 else edge[-1])
    return edge
