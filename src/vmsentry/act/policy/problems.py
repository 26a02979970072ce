"""Errors and warnings about a policy, each naming the file and line it is about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    severity: str  # "error" | "warning"
    message: str
    file: str | None = None
    line: int | None = None  # 1-based

    def __str__(self) -> str:
        where = self.file or "policy"
        if self.line:
            where += f":{self.line}"
        return f"{where}: {self.severity}: {self.message}"

    def to_dict(self) -> dict:
        return {"severity": self.severity, "file": self.file, "line": self.line, "message": self.message}


class PolicyError(Exception):
    """The policy (or its combination with the inventory) cannot be compiled. ``problems`` holds every
    error found (not just the first) plus the warnings found on the way."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors) or "invalid policy")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


class Problems:
    """Collects problems for one file."""

    def __init__(self, file: str | None):
        self.file = file
        self.items: list[Problem] = []

    def error(self, line: int | None, message: str) -> None:
        self.items.append(Problem("error", message, self.file, line))

    def warn(self, line: int | None, message: str) -> None:
        self.items.append(Problem("warning", message, self.file, line))

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.items)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise PolicyError(self.items)

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "warning"]
