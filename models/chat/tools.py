"""Function-calling tools over the tenant's own data. Each returns a card (sent to the
widget as a `card` event, matching ChatCardEvent) and a compact result fed back to the
model.

Tours are the chatbot's knowledge documents: those whose front matter says
`type: tour` when there are any, otherwise every document. Their front matter carries
the facts the cards show (difficulty, duration, distance_km, lat, lon, booking_url...).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session

from models import knowledge

log = logging.getLogger("chat.tools")

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "search_tours",
        "description": "Search the tours and hikes of this website. Returns matching tours.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "What the visitor looks for, in their words."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 6}},
            "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "get_tour",
        "description": "Details of one tour by the id that search_tours returned.",
        "parameters": {"type": "object", "properties": {"tour_id": {"type": "string"}}, "required": ["tour_id"]}}},
    {"type": "function", "function": {
        "name": "show_map",
        "description": "Show tours on a map: by tour id, or by a search query.",
        "parameters": {"type": "object", "properties": {
            "tour_id": {"type": "string"}, "query": {"type": "string"}}}}},
    {"type": "function", "function": {
        "name": "booking_link",
        "description": "The booking link for a tour (by id) or for the website.",
        "parameters": {"type": "object", "properties": {"tour_id": {"type": "string"}}}}},
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather forecast for a place.",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["location"]}}},
]


@dataclasses.dataclass
class ToolResult:
    card: dict[str, Any] | None
    result: dict[str, Any]  # what the model is told


class WeatherProvider(Protocol):
    def forecast(self, location: str, days: int) -> dict[str, Any] | None:
        """{"location", "days": [{"date", "summary", "temp_min", "temp_max", "precipitation_mm"}]} or None."""


class NoWeather:
    def forecast(self, location: str, days: int) -> dict[str, Any] | None:
        return None


class OpenMeteoWeather:
    """open-meteo.com: geocoding, then the daily forecast. No key needed."""

    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout

    def forecast(self, location: str, days: int) -> dict[str, Any] | None:
        import httpx

        with httpx.Client(timeout=self.timeout) as http:
            places = http.get("https://geocoding-api.open-meteo.com/v1/search",
                              params={"name": location, "count": 1}).json().get("results") or []
            if not places:
                return None
            place = places[0]
            daily = http.get("https://api.open-meteo.com/v1/forecast", params={
                "latitude": place["latitude"], "longitude": place["longitude"], "forecast_days": days,
                "daily": "temperature_2m_max,temperature_2m_min,precipitation_sum,weathercode",
                "timezone": "auto"}).json()["daily"]
        return {"location": place["name"], "days": [
            {"date": d, "temp_max": hi, "temp_min": lo, "precipitation_mm": rain, "weathercode": code}
            for d, hi, lo, rain, code in zip(daily["time"], daily["temperature_2m_max"],
                                             daily["temperature_2m_min"], daily["precipitation_sum"],
                                             daily["weathercode"], strict=False)]}


WEATHER_PROVIDERS: dict[str, Callable[[float], WeatherProvider]] = {
    "none": lambda timeout: NoWeather(),
    "open-meteo": lambda timeout: OpenMeteoWeather(timeout),
}


def register_weather_provider(name: str, factory: Callable[[float], WeatherProvider]) -> None:
    WEATHER_PROVIDERS[name] = factory


def _tour(document: knowledge.KnowledgeDocument, summary: str = "") -> dict[str, Any]:
    facts = {k: v for k, v in (document.meta or {}).items() if k != "type" and _plain(v)}
    return {"id": str(document.id), "title": document.title, "url": document.url, "summary": summary, **facts}


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _tour_documents(session: Session, chatbot_id: uuid.UUID) -> list[knowledge.KnowledgeDocument]:
    documents = knowledge.list_documents(session, chatbot_id)
    tours = [d for d in documents if (d.meta or {}).get("type") == "tour"]
    return tours or documents


def _find_tours(session: Session, chatbot_id: uuid.UUID, query: str, limit: int) -> list[dict[str, Any]]:
    allowed = {d.id: d for d in _tour_documents(session, chatbot_id)}
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for hit in knowledge.search(session, chatbot_id, query, limit=limit * 3):
        if hit.document_id in allowed and hit.document_id not in found:
            found[hit.document_id] = _tour(allowed[hit.document_id], _summary(hit.content))
        if len(found) >= limit:
            break
    return list(found.values())


def _summary(content: str, limit: int = 200) -> str:
    lines = [line.strip().lstrip("-*# ").strip() for line in content.splitlines() if line.strip()]
    text = " ".join(lines[1:] or lines)
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def _tour_by_id(session: Session, chatbot_id: uuid.UUID, tour_id: Any) -> knowledge.KnowledgeDocument | None:
    try:
        document_id = uuid.UUID(str(tour_id))
    except ValueError:
        return None
    document = session.get(knowledge.KnowledgeDocument, document_id)
    # Another chatbot's document is the same as none.
    return document if document is not None and document.chatbot_id == chatbot_id else None


def run_tool(session: Session, chatbot, name: str, raw_arguments: str, *,
             weather: WeatherProvider) -> ToolResult:
    """Runs one tool call; bad arguments or unknown tools are reported to the model,
    never raised."""
    try:
        arguments = json.loads(raw_arguments or "{}")
        if not isinstance(arguments, dict):
            raise ValueError("arguments must be an object")
    except ValueError as exc:
        return ToolResult(None, {"error": f"invalid arguments: {exc}"})
    chatbot_id = chatbot.id
    if name == "search_tours":
        query = str(arguments.get("query") or "")[:500]
        limit = min(6, max(1, int(arguments.get("limit") or 4))) if str(arguments.get("limit") or "4").isdigit() else 4
        tours = _find_tours(session, chatbot_id, query, limit)
        if len(tours) == 1:
            return ToolResult({"type": "tour_detail", "query": query, "tour": tours[0], "tours": tours},
                              {"tours": tours})
        return ToolResult({"type": "tour_list", "query": query, "tours": tours}, {"tours": tours})
    if name == "get_tour":
        document = _tour_by_id(session, chatbot_id, arguments.get("tour_id"))
        if document is None:
            return ToolResult(None, {"error": "unknown tour_id"})
        summary = _summary(document.passages[0].content) if document.passages else ""
        tour = _tour(document, summary)
        return ToolResult({"type": "tour_detail", "tour": tour, "tours": [tour]}, {"tour": tour})
    if name == "show_map":
        if arguments.get("tour_id"):
            document = _tour_by_id(session, chatbot_id, arguments["tour_id"])
            tours = [_tour(document)] if document else []
            query = document.title if document else ""
        else:
            query = str(arguments.get("query") or "")[:500]
            tours = _find_tours(session, chatbot_id, query, 6) if query else \
                [_tour(d) for d in _tour_documents(session, chatbot_id)[:20]]
        markers = [{"id": t["id"], "title": t["title"], "lat": t["lat"], "lon": t["lon"], "url": t.get("url")}
                   for t in tours if isinstance(t.get("lat"), (int, float)) and isinstance(t.get("lon"), (int, float))]
        return ToolResult({"type": "map", "query": query, "markers": markers},
                          {"markers": len(markers), "tours": [t["title"] for t in tours]})
    if name == "booking_link":
        document = _tour_by_id(session, chatbot_id, arguments.get("tour_id")) if arguments.get("tour_id") else None
        config_url = ((chatbot.widget_config or {}).get("widget") or {}).get("booking_url")
        url = ((document.meta or {}).get("booking_url") if document else None) or config_url or \
            (document.url if document else None)
        if not url:
            return ToolResult(None, {"error": "no booking link is known"})
        title = document.title if document else chatbot.title
        return ToolResult({"type": "booking", "title": title, "url": url}, {"title": title, "url": url})
    if name == "get_weather":
        location = str(arguments.get("location") or "")[:200]
        days = arguments.get("days") if isinstance(arguments.get("days"), int) else 3
        try:
            forecast = weather.forecast(location, min(7, max(1, days)))
        except Exception as exc:  # a weather outage must not end the turn
            log.warning("weather provider failed: %s", exc)
            forecast = None
        if forecast is None:
            return ToolResult({"type": "weather", "query": location, "location": location, "available": False},
                              {"available": False})
        return ToolResult({"type": "weather", "query": location, "available": True, **forecast}, forecast)
    return ToolResult(None, {"error": f"unknown tool {name!r}"})
