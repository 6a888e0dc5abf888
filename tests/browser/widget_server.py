"""The production ASGI app under uvicorn for the browser tests, with one deterministic
weather provider registered (open-meteo is not reachable here): `CHAT_WEATHER_PROVIDER=fixed`.

    python tests/browser/widget_server.py PORT
"""
from __future__ import annotations

import datetime as dt
import sys

import uvicorn

from models.chat import tools


class FixedWeather:
    def forecast(self, location: str, days: int) -> dict:
        start = dt.date(2026, 12, 2)
        return {"location": location, "days": [
            {"date": (start + dt.timedelta(days=i)).isoformat(), "temp_min": -3.2 + i, "temp_max": 4.8 + i,
             "precipitation_mm": 1.5 * i, "weathercode": (0, 3, 71)[i % 3]} for i in range(days)]}


tools.register_weather_provider("fixed", lambda timeout: FixedWeather())

if __name__ == "__main__":
    uvicorn.run("handlers.runtime.asgi:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                lifespan="on")
