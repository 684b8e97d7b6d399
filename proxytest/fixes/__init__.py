"""Config fixes per proxy (issue 14): planners that turn findings into structural edits."""

from .base import Change, Finding, Plan, Planner, Refusal, unified_diff

__all__ = ["Change", "Finding", "Plan", "Planner", "Refusal", "unified_diff"]
