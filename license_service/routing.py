"""L8: who disables automatic renewal, from the purchase channel and order number.

Order numbers are matched ignoring case and surrounding blanks (people paste
them from e-mails), but blanks inside an order number are not ignored: such a
number matches no reseller and goes to our own support, which can still find it.
"""

from __future__ import annotations

import re

RESELLER_ALLSOFT = "RESELLER_ALLSOFT"
RESELLER_NEXWAY = "RESELLER_NEXWAY"
OWN_SUPPORT = "OWN_SUPPORT"
PROVIDER_SUPPORT = "PROVIDER_SUPPORT"
SELF_SERVICE = "SELF_SERVICE"

# Matched with fullmatch on ASCII input only: upper() maps "ß" to "SS" and "ı" to "I", so
# "2ß1" would otherwise pass for a Nexway order (S4).
_ALLSOFT = re.compile(r"ALLSOFT-[0-9]+|A[0-9]+")
_NEXWAY = re.compile(r"[23][A-Z0-9]+")

INSTRUCTIONS = {
    RESELLER_ALLSOFT: "Contact the reseller Allsoft's support with your order number.",
    RESELLER_NEXWAY: "Follow the reseller Nexway's self-service instructions for your order.",
    OWN_SUPPORT: "Send a support request with your purchase details (CreateSupportRequest).",
    PROVIDER_SUPPORT: "Contact the support of the provider you bought the subscription from.",
    SELF_SERVICE: "Automatic renewal was changed by keyslot directly.",
}


def route_for(purchase_channel: str, order_number: str) -> str:
    """The L8 route for a purchase channel and order number."""
    if purchase_channel in ("ISP", "PARTNER"):
        return PROVIDER_SUPPORT
    if purchase_channel == "ONLINE_STORE":
        order = order_number.strip(" \t\r\n")  # ASCII blanks; strip() takes Unicode ones too
        if not order.isascii():
            return OWN_SUPPORT
        order = order.upper()
        if _ALLSOFT.fullmatch(order):
            return RESELLER_ALLSOFT
        if _NEXWAY.fullmatch(order):
            return RESELLER_NEXWAY
    return OWN_SUPPORT  # ACCOUNT_PORTAL, or a store order matching no reseller


def keyslot_owns(purchase_channel: str) -> bool:
    """Whether keyslot itself sold the subscription, so it may switch renewal itself."""
    return purchase_channel == "ACCOUNT_PORTAL"
