"""What the browser tests share besides fixtures: the served console, the window size."""

from dataclasses import dataclass
from pathlib import Path

import httpx
from tests_support import TOKENS

from services.auth import Role

ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots (git-ignored)
WIDTH, HEIGHT = 1280, 900


@dataclass
class Console:
    url: str

    def api(self, role: Role = Role.RESPONDER) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)
