"""Whatever escapes a middleware placed before connexion's exception handling (CORS looks
the chatbot up before routing) is answered in the API's shape with a request id, never
the server's bare 500."""
from __future__ import annotations

from handlers.runtime.cors import ChatbotCorsMiddleware


def test_a_failing_cors_lookup_is_answered_in_the_apis_shape(client, make_chatbot, monkeypatch):
    bot = make_chatbot(allowed_origins=["https://shop.example"])

    def broken(self, slug):
        raise RuntimeError("lookup failed")

    monkeypatch.setattr(ChatbotCorsMiddleware, "_allowed_origins", broken)
    for response in (client.get(f"/api/widget-config/{bot.slug}", headers={"Origin": "https://shop.example"}),
                     client.options(f"/api/widget-config/{bot.slug}", headers={
                         "Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})):
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["X-Request-Id"].startswith("req_")
        assert response.json() == {"error": "internal_error"}
    # Same-origin requests never ask CORS: unaffected.
    assert client.get(f"/api/widget-config/{bot.slug}").status_code == 200
