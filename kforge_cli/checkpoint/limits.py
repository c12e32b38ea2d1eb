"""Every cap the checkpoint readers enforce, in one place.

A checkpoint is untrusted input: each number here bounds the time or memory
one file can make kforge spend, and a file past a cap is refused with a
message naming it. Readers look the caps up as ``limits.NAME`` at call time.

The caps sit above what the checkpoints of typical runs need (figures in the
comments) and low enough that the worst file under all of them is read in
seconds and well under 1 GiB (tests/unit/test_checkpoint_bounds.py). The
tightest is MAX_PICKLE_BYTES: the DCP metadata of a large model saved by
hundreds of ranks is past it, and is refused with a message naming the cap.
"""

from __future__ import annotations

KiB = 2**10
MiB = 2**20

# --- pickles (DCP .metadata, the data.pkl of a torch.save file) ---------------
# Measured on torch 2.13 (tests/unit/ckpt_attacks.py builds such files): a DCP
# .metadata takes about 142 bytes per chunk, one chunk per tensor per saving
# rank, so a 7B model's weights and AdamW moments (about 900 sharded tensors)
# saved by 128 ranks come to about 16 MiB. A torch.save data.pkl takes about
# 110 bytes per tensor. Reading runs at about 4 MB/s of DCP metadata.
MAX_PICKLE_BYTES = 16 * MiB
# Steps one pickle may take: one per opcode plus the items an allowed builder
# or a BUILD copies. DCP metadata needs about 0.5 per byte, 8 million at the cap.
MAX_PICKLE_OPCODES = 10_000_000
# Objects (containers, records, strings, numbers) one pickle may create, and
# entries its memo may hold: DCP metadata at the byte cap needs about 1.9 million.
MAX_PICKLE_OBJECTS = 3_000_000
MAX_PICKLE_MEMO = 3_000_000
# Bytes the allowed builders may copy (latin-1 strings turned into bytes).
MAX_PICKLE_COPIED_BYTES = 64 * MiB
# Containers inside containers, counted as built; real checkpoints nest < 10.
MAX_NESTING = 100
# Integers: real pickles hold sizes, offsets and torch.save's 80-bit magic.
MAX_INT_BYTES = 32
MAX_INT_DIGITS = 80

# --- what a checkpoint lists ----------------------------------------------------
# Entries (tensors, optimizer state, other values) in one checkpoint: the
# largest public HF models list about 90k tensors; a DCP save with AdamW state
# lists about three entries per parameter tensor.
MAX_ENTRIES = 500_000
# Characters in one entry name: real names are under 300.
MAX_NAME_CHARS = 1024
# The central directory of a torch.save zip: about 100 bytes per member, one
# member per storage.
MAX_ZIP_DIRECTORY_BYTES = 64 * MiB

# --- JSON (safetensors headers, HF indexes, metadata.json) ------------------------
# A safetensors header is about 100 bytes per tensor; the largest HF index
# (DeepSeek-V3, 91k tensors) is about 9 MiB.
MAX_SAFETENSORS_HEADER_BYTES = 16 * MiB
MAX_INDEX_BYTES = 16 * MiB
# KempnerForge writes metadata.json as step, tokens_seen and vlm_freeze.
MAX_RUN_METADATA_BYTES = 64 * KiB
# Containers ([ and {) one JSON document may hold; 3 per safetensors entry.
MAX_JSON_CONTAINERS = 1_000_000
MAX_JSON_DEPTH = 64
# Shard files one HF index may name (the largest public models use < 2000),
# and the characters in one shard's relative path.
MAX_SHARDS = 4096
MAX_SHARD_PATH_CHARS = 256
# Header (or pickle) bytes of all the shards one index names, together: 90k
# tensors at about 150 header bytes each come to about 14 MiB.
MAX_INDEX_SHARD_BYTES = 64 * MiB

# --- pointers ---------------------------------------------------------------------
MAX_POINTER_BYTES = 4 * KiB
