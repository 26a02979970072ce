"""The hand-written RFC 6962 tree (report/audit/merkle.py) against published test vectors.

Vectors: transparency-dev/merkle (Apache-2.0), testonly/constants.go (leaf inputs, node hashes, the roots of
every tree size 0..8) and proof/verify_test.go (inclusion and consistency proofs), the successor of
google/certificate-transparency's merkle tree tests; hashes per RFC 6962 section 2.1.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from vmsentry.report.audit.merkle import (
    EMPTY_ROOT,
    Compact,
    ProofError,
    Tree,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex
LEAF_INPUTS = [
    h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    EMPTY_ROOT,
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf index 1-based as in verify_test.go, tree size, proof)
INCLUSION = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
LEAVES = [leaf_hash(x) for x in LEAF_INPUTS]


def test_leaf_and_node_hashes_and_roots_of_every_size():
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert LEAVES[0] == ROOTS[1]  # a one-leaf tree's root is its leaf hash
    for size in range(9):
        assert root(LEAVES[:size]) == ROOTS[size]
        compact = Compact()
        compact.extend(LEAVES[:size])
        assert compact.root() == ROOTS[size]
        assert Tree(LEAVES[:size]).root() == ROOTS[size]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_proofs_match_the_vectors(index, size, proof):
    proof = [h(x) for x in proof]
    assert Tree(LEAVES[:size]).inclusion_proof(index - 1) == proof
    verify_inclusion(index - 1, size, LEAVES[index - 1], proof, ROOTS[size])
    wrong = [  # the corruptions verify_test.go tries, each must fail
        (index - 2, size, LEAVES[index - 1], proof, ROOTS[size]),
        (index, size, LEAVES[index - 1], proof, ROOTS[size]),
        (index - 1, size * 2, LEAVES[index - 1], proof, ROOTS[size]),
        (index - 1, size // 2, LEAVES[index - 1], proof, ROOTS[size]),
        (index - 1, size, leaf_hash(b"WrongLeaf"), proof, ROOTS[size]),
        (index - 1, size, LEAVES[index - 1], proof, EMPTY_ROOT),
        (index - 1, size, LEAVES[index - 1], [*proof, ROOTS[size]], ROOTS[size]),
        (index - 1, size, LEAVES[index - 1], [ROOTS[size], *proof], ROOTS[size]),
        (index - 1, size, LEAVES[index - 1], proof[:-1], ROOTS[size]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        wrong.append((index - 1, size, LEAVES[index - 1], flipped, ROOTS[size]))
    for args in wrong:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


@pytest.mark.parametrize("old,size,proof", CONSISTENCY)
def test_consistency_proofs_match_the_vectors(old, size, proof):
    proof = [h(x) for x in proof]
    assert Tree(LEAVES[:size]).consistency_proof(old) == proof
    verify_consistency(old, size, ROOTS[old], ROOTS[size], proof)
    wrong = [
        (old, size, ROOTS[size], ROOTS[old], proof),  # swapped roots
        (old, size, b"WrongRoot", ROOTS[size], proof),
        (old, size, ROOTS[old], ROOTS[size], []),
        (old, size, ROOTS[old], ROOTS[size], [*proof, ROOTS[old]]),
        (old, size, ROOTS[old], ROOTS[size], [proof[0], *proof]),
        (old, size, ROOTS[old], ROOTS[size], proof[:-1]),
        (old, size * 2, ROOTS[old], ROOTS[size], proof),
    ]
    if old > 1:
        wrong.append((old - 1, size, ROOTS[old], ROOTS[size], proof))
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        wrong.append((old, size, ROOTS[old], ROOTS[size], flipped))
    for args in wrong:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_every_proof_of_random_trees_verifies_and_a_pruned_base_gives_the_same_proofs():
    rng = random.Random(6962)
    for size in [*range(1, 40), 257, 1000]:
        leaves = [leaf_hash(rng.randbytes(rng.randrange(40))) for _ in range(size)]
        whole = Tree(leaves)
        top = whole.root()
        assert top == root(leaves)
        cut = rng.randrange(size + 1)
        base = Compact()
        base.extend(leaves[:cut])
        pruned = Tree(leaves[cut:], base=base)
        assert pruned.root() == top
        for index in rng.sample(range(size), min(size, 12)):
            proof = whole.inclusion_proof(index)
            verify_inclusion(index, size, leaves[index], proof, top)
            if index >= cut:
                assert pruned.inclusion_proof(index) == proof
        for old in rng.sample(range(size + 1), min(size + 1, 8)):
            proof = whole.consistency_proof(old)
            verify_consistency(old, size, root(leaves[:old]), top, proof)
            if old >= cut:
                assert pruned.consistency_proof(old) == proof
