"""One module per pipeline stage; pure logic in plain modules beside them."""

import warnings

from dagster import BetaWarning

# Two features we rely on are marked beta in Dagster 1.13 (backfill policies, the pandera
# type bridge); the warning is for us, not for every user of the CLI.
warnings.filterwarnings("ignore", category=BetaWarning)
