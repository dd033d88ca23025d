"""KPIs (DESIGN §5): the registry of every KPI and the quantities behind it (registry), the buckets of
a period (periods), how values are written (values) and the RACE funnel (funnel). Pure: no I/O."""

from app.domain.kpis.funnel import RACE_STAGES, FunnelKind, funnel_steps, nested_counts, race_funnel
from app.domain.kpis.periods import Bucket, Granularity, buckets, limited_groups, parse_bound
from app.domain.kpis.registry import REGISTRY, TO_DATE, Counts, Direction, Kpi, Unit, kpis_of
from app.domain.kpis.values import MONEY_SCALE, cents, money, money_ratio, ratio

__all__ = [
    "MONEY_SCALE", "RACE_STAGES", "REGISTRY", "TO_DATE", "Bucket", "Counts", "Direction", "FunnelKind", "Granularity",
    "Kpi", "Unit", "buckets", "cents", "funnel_steps", "kpis_of", "limited_groups", "money", "money_ratio",
    "nested_counts", "parse_bound", "race_funnel", "ratio",
]  # fmt: skip
