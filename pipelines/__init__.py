"""refinery.pipelines: the spine. Recipes, readers, the planner, the Ray runner, accounting and reports."""

__version__ = "0.1.0"
