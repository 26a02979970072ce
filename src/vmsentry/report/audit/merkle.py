"""The RFC 6962 Merkle tree (Certificate Transparency, section 2.1), written here rather than taken from a
package (pymerkle is GPL; this project is Apache-2.0).

* leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``;
* ``MTH(D[n])`` for any n: the left subtree holds the largest power of two below n leaves;
* inclusion proofs (``PATH``, section 2.1.1) and consistency proofs (``PROOF``/``SUBPROOF``, 2.1.2) with
  their verification (the iterative form of RFC 9162 sections 2.1.3.2 and 2.1.4.2).

``Compact`` is the tree's right edge (one hash per set bit of the size: the perfect subtrees that cover
the leaves so far). Appending a leaf merges equal-sized subtrees, one node hash per leaf on average, so
the log never recomputes the tree and a pruned prefix is summarised by its compact edge alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


class ProofError(ValueError):
    """A proof that does not prove what it claims (wrong size, index, length or hash)."""


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): the size of MTH's left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """The maximal aligned perfect subtrees that cover [start, end), left to right (a compact range)."""
    out = []
    while start < end:
        size = start & -start if start else 1 << (end.bit_length() - 1)
        while start + size > end:
            size >>= 1
        out.append((start, start + size))
        start += size
    return out


class Compact:
    """The right edge of a tree of ``size`` leaves whose first ``start`` leaves may be gone (pruned):
    ``nodes`` are the hashes of the perfect subtrees covering [0, size), left to right."""

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != size.bit_count():
            raise ProofError(f"a tree of {size} leaves has {size.bit_count()} edge hashes, not {len(nodes)}")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf: bytes) -> None:
        nodes, node, size = self.nodes, leaf, self.size
        while size & 1:  # each trailing 1 bit is a perfect subtree of the new leaf's size: merge them
            node = _sha256(b"\x01" + nodes.pop() + node).digest()
            size >>= 1
        nodes.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Appends many leaves: aligned runs of 2^k leaves are hashed level by level (list comprehensions, no
        per-leaf merging) and join the edge as one subtree."""
        leaves = leaves if isinstance(leaves, list) else list(leaves)
        at, count = 0, len(leaves)
        while at < count:
            left = count - at
            k = min(left.bit_length() - 1, (self.size & -self.size).bit_length() - 1 if self.size else 64)
            if k < 4:
                self.append(leaves[at])
                at += 1
                continue
            self._push(root(leaves[at : at + (1 << k)]), k)
            at += 1 << k

    def _push(self, node: bytes, k: int) -> None:
        """Appends a perfect subtree of 2^k leaves (the size is a multiple of 2^k)."""
        nodes, size = self.nodes, self.size >> k
        while size & 1:
            node = _sha256(b"\x01" + nodes.pop() + node).digest()
            size >>= 1
        nodes.append(node)
        self.size += 1 << k

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        node = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            node = _sha256(b"\x01" + left + node).digest()
        return node

    def copy(self) -> Compact:
        return Compact(self.size, self.nodes)

    def ranges(self) -> list[tuple[int, int]]:
        return _perfect_ranges(0, self.size)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, level by level: a level's last node without a partner moves up unchanged, which
    is the same tree as the RFC's recursive split."""
    level = list(leaves)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        pairs = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            pairs.append(level[-1])
        level = pairs
    return level[0]


class Tree:
    """Proofs over leaf hashes [0, size). ``base`` (a Compact) stands for a pruned prefix: its subtrees are
    known only by their hashes, which is all any proof about a later leaf or a later size needs."""

    def __init__(self, leaves: Sequence[bytes], base: Compact | None = None) -> None:
        self.base = base or Compact()
        self.leaves = leaves  # leaf hashes from base.size on
        self.size = self.base.size + len(leaves)
        self._known = dict(zip(self.base.ranges(), self.base.nodes))
        self._memo: dict[tuple[int, int], bytes] = {}

    def hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a subtree of the tree."""
        key = (lo, hi)
        found = self._known.get(key) or self._memo.get(key)
        if found is not None:
            return found
        if lo < self.base.size and hi - lo == 1:
            raise ProofError(f"leaf {lo} was pruned: only its subtree's hash is kept")
        if hi - lo == 1:
            return self.leaves[lo - self.base.size]
        if lo >= self.base.size and hi - lo > 64:
            value = root(self.leaves[lo - self.base.size : hi - self.base.size])
        else:
            k = _split(hi - lo)
            value = node_hash(self.hash(lo, lo + k), self.hash(lo + k, hi))
        self._memo[key] = value
        return value

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return EMPTY_ROOT if size == 0 else self.hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) of RFC 6962 2.1.1, from the leaf's sibling up."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ProofError(f"no leaf {index} in a tree of {size}")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self.hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.hash(lo, lo + k))
                lo += k
        return path[::-1]

    def consistency_proof(self, old: int, size: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) of RFC 6962 2.1.2."""
        size = self.size if size is None else size
        if not 0 <= old <= size <= self.size:
            raise ProofError(f"no consistency proof from {old} to {size}")
        if old in (0, size):
            return []
        return self._subproof(old, 0, size, True)

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if whole else [self.hash(lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return self._subproof(m, lo, lo + k, whole) + [self.hash(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.hash(lo, lo + k)]


def _climb(fn: int, sn: int, path: Sequence[bytes]):
    """The walk of RFC 9162 2.1.3.2 / 2.1.4.2 up from node ``fn`` of the last node ``sn``: yields each path
    hash and whether it is the left sibling; raises when the path is longer or shorter than the tree."""
    for sibling in path:
        if sn == 0:
            raise ProofError("the proof is longer than the path")
        left = bool(fn & 1 or fn == sn)
        yield sibling, left
        if left:
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes) -> None:
    """Raises ProofError unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size``
    leaves whose root is ``expected_root`` (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of {size}")
    node = leaf
    for sibling, left in _climb(index, size - 1, proof):
        node = node_hash(sibling, node) if left else node_hash(node, sibling)
    if node != expected_root:
        raise ProofError("the proof leads to another root")


def verify_consistency(old: int, size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Raises ProofError unless ``proof`` shows the tree of ``old`` leaves (root ``old_root``) is a prefix
    of the tree of ``size`` leaves (root ``new_root``) (RFC 9162 2.1.4.2)."""
    if not 0 <= old <= size:
        raise ProofError(f"a tree cannot shrink from {old} to {size}")
    if old == size or old == 0:
        if proof:
            raise ProofError("the proof must be empty")
        if old == size and old_root != new_root:
            raise ProofError("two trees of one size with different roots")
        return
    if not proof:
        raise ProofError("an empty proof")
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node of the path
        path.insert(0, old_root)
    fn, sn = old - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for node, left in _climb(fn, sn, path[1:]):
        if left:
            first, second = node_hash(node, first), node_hash(node, second)
        else:
            second = node_hash(second, node)
    if first != old_root or second != new_root:
        raise ProofError("the proof leads to other roots")
