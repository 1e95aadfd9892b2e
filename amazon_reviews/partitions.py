"""The one partitions definition shared by every layer: batches, added dynamically."""

import dagster as dg

BATCH_PARTITIONS_NAME = "batch"

batch_partitions = dg.DynamicPartitionsDefinition(name=BATCH_PARTITIONS_NAME)
