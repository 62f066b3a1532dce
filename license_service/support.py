"""L8: a support request, for a customer whose renewal our own support handles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SupportRequest:
    """What a customer tells support about a purchase; the id is given when it is filed."""

    reason: str
    purchase_date: str  # YYYY-MM-DD
    full_name: str
    email: str
    order_number: str
    create_time: datetime
    support_request_id: str = ""
