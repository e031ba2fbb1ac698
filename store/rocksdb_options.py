"""RocksDB settings as one frozen object that translates itself into rocksdict's."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rocksdict import BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager


@dataclass(frozen=True)
class RocksOptions:
    # RocksDB's memory for every store a process opens with these options: one block
    # cache of this size is shared by them all, and their memtables are charged to it,
    # so a process training nine models (and reading their snapshots) is bounded by
    # this, not by nine times it.
    block_cache_mb: int = 256
    # Memtables of all those stores together, inside the budget above: past this,
    # RocksDB flushes the largest one.
    memtables_mb: int = 128
    write_buffer_mb: int = 64
    compression: str = "lz4"
    # Most lookups of a growing table are for ids not stored yet: a Bloom filter
    # answers those without reading a block.
    bloom_bits_per_key: int = 10
    # The same for the memtable, where the newest rows are (a share of its size).
    memtable_bloom_ratio: float = 0.1

    def to_options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(self.write_buffer_mb << 20)
        if self.memtable_bloom_ratio > 0:
            opts.set_memtable_whole_key_filtering(True)
            opts.set_memtable_prefix_bloom_ratio(self.memtable_bloom_ratio)
        cache, memtables = _shared_memory(self.block_cache_mb, self.memtables_mb)
        opts.set_write_buffer_manager(memtables)
        table = BlockBasedOptions()
        table.set_block_cache(cache)
        if self.bloom_bits_per_key > 0:
            table.set_bloom_filter(self.bloom_bits_per_key, False)
        opts.set_block_based_table_factory(table)
        kinds = {
            "none": DBCompressionType.none(),
            "lz4": DBCompressionType.lz4(),
            "zstd": DBCompressionType.zstd(),
            "snappy": DBCompressionType.snappy(),
        }
        if self.compression not in kinds:
            raise ValueError(f"unknown compression {self.compression!r}; choose {sorted(kinds)}")
        opts.set_compression_type(kinds[self.compression])
        return opts


@functools.cache
def _shared_memory(block_cache_mb: int, memtables_mb: int) -> tuple[Cache, WriteBufferManager]:
    """One block cache and one memtable budget per process and size."""
    cache = Cache(block_cache_mb << 20)
    # No stall: a writer over the budget triggers a flush rather than waiting on one.
    manager = WriteBufferManager.new_write_buffer_manager_with_cache(
        memtables_mb << 20, False, cache
    )
    return cache, manager
