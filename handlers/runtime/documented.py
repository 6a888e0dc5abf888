"""Refusals answered in a status the operation lists, where one carries their meaning."""
from __future__ import annotations

from handlers.runtime.errors import ApiError
from handlers.runtime.specs import Operation

FORBIDDEN_RESPONSE = "#/components/responses/Forbidden"


def foreign_key_translation(operation: Operation):
    """A key of another tenant (or bound to another chatbot) is `forbidden` (403) where the
    operation lists AlpineChat's Forbidden response ("the key does not belong to this
    chatbot's tenant"). Elsewhere (leads, escalations, chat) the only listed refusal of a
    key is 401 Unauthorized ("no or invalid key, or missing scope"): the key is not valid
    for this chatbot, so it is answered as `unauthorized`. None when nothing needs it."""
    if operation.api.name != "alpinechat":
        return None
    forbidden = operation.source.get("responses", {}).get("403")
    if isinstance(forbidden, dict) and forbidden.get("$ref") == FORBIDDEN_RESPONSE:
        return None

    def translate(error: ApiError) -> ApiError:
        if error.code == "forbidden":
            error.code = "unauthorized"  # the same refusal, named as this operation documents it
        return error

    return translate
