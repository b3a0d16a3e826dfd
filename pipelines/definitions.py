"""The one Definitions object of autoannotate: assets, checks, jobs, sensors, schedules and resources, built from
one deployment's settings; nothing is read when the module is imported."""

import dagster as dg

from assets import concepts, inference, ingestion, maintenance, model_loop, quality, triage, versions
from assets.partitions import daily_partitions_from
from core.settings import Settings
from pipelines.jobs import build_jobs
from pipelines.schedules import build_schedules
from pipelines.sensors import build_sensors
from resources import build_resources

ASSET_MODULES = [ingestion, inference, triage, concepts, versions, model_loop, quality, maintenance]


def dated_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The assets, the daily ones partitioned from the deployment's first day (AUTOANNOTATE_VERSIONS_START)."""
    days = daily_partitions_from(settings.versions_start)

    def dated(spec: dg.AssetSpec) -> dg.AssetSpec:
        daily = isinstance(spec.partitions_def, dg.TimeWindowPartitionsDefinition)
        return spec.replace_attributes(partitions_def=days) if daily else spec

    return [asset.map_asset_specs(dated) for asset in dg.load_assets_from_modules(ASSET_MODULES)]


def build_definitions(settings: Settings, show_variables: bool = False) -> dg.Definitions:
    """Definitions bound to one deployment's settings (a run may carry its own inbox and task files)."""
    return dg.Definitions(
        assets=dated_assets(settings),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=build_jobs(settings),
        sensors=build_sensors(settings),
        schedules=build_schedules(settings),
        resources=build_resources(settings, show_variables),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dagster dev`, the daemon and `make ui` load: variables show as EnvVars in the UI."""
    settings = Settings.from_env()
    settings.prepare_home()
    return build_definitions(settings, show_variables=True)
