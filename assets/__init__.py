"""Asset and asset-check definitions only, one module per pipeline stage; each is thin: read through the
store, call `core`, write through the store, attach metadata. Partitions and the shared schema check live
beside them."""

import warnings

from dagster import BetaWarning

# Two features we rely on are marked beta in Dagster 1.13 (backfill policies, asset pools); the
# warning is for us, not for every user of the CLI.
warnings.filterwarnings("ignore", category=BetaWarning)
