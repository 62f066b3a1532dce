import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_ARGUMENT: _ClassVar[ErrorReason]
    ERROR_REASON_UNAUTHENTICATED: _ClassVar[ErrorReason]
    ERROR_REASON_PERMISSION_DENIED: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_PRODUCT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_PRODUCT_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_MANY_FAILED_LOOKUPS: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_BLOCKED: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_PAUSED: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_CANCELLED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_A_SUBSCRIPTION: _ClassVar[ErrorReason]
    ERROR_REASON_ALREADY_PAUSED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_PAUSED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_BLOCKED: _ClassVar[ErrorReason]
    ERROR_REASON_ALREADY_BLOCKED: _ClassVar[ErrorReason]
    ERROR_REASON_UNLIMITED_TERM: _ClassVar[ErrorReason]
    ERROR_REASON_SUBSCRIPTION_ACTIVE: _ClassVar[ErrorReason]
    ERROR_REASON_EXPIRES_EARLIER: _ClassVar[ErrorReason]
    ERROR_REASON_REGION_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_TRIAL_OR_FREE: _ClassVar[ErrorReason]
    ERROR_REASON_PER_USER_SERVICE: _ClassVar[ErrorReason]
    ERROR_REASON_VERSION_INCOMPATIBLE: _ClassVar[ErrorReason]
    ERROR_REASON_CONSOLE_ONLY: _ClassVar[ErrorReason]
    ERROR_REASON_LIMITED_WHILE_AUTO_RENEW: _ClassVar[ErrorReason]
    ERROR_REASON_AUTO_RENEW_WHILE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_SAME_AS_CURRENT: _ClassVar[ErrorReason]
    ERROR_REASON_GRANT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_GRANT_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_GRANT_ABORTED: _ClassVar[ErrorReason]
    ERROR_REASON_GRANT_COMMITTED: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_ID_REUSED: _ClassVar[ErrorReason]
    ERROR_REASON_ALREADY_CANCELLED: _ClassVar[ErrorReason]
    ERROR_REASON_NO_FREE_SLOTS: _ClassVar[ErrorReason]

class CodeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_KIND_UNSPECIFIED: _ClassVar[CodeKind]
    CODE_KIND_LICENSE: _ClassVar[CodeKind]
    CODE_KIND_SUBSCRIPTION: _ClassVar[CodeKind]

class Coverage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COVERAGE_UNSPECIFIED: _ClassVar[Coverage]
    COVERAGE_UPDATES: _ClassVar[Coverage]
    COVERAGE_UPDATES_AND_PROTECTION: _ClassVar[Coverage]

class SlotKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_KIND_UNSPECIFIED: _ClassVar[SlotKind]
    SLOT_KIND_PER_DEVICE: _ClassVar[SlotKind]
    SLOT_KIND_PER_USER: _ClassVar[SlotKind]

class PurchaseChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PURCHASE_CHANNEL_UNSPECIFIED: _ClassVar[PurchaseChannel]
    PURCHASE_CHANNEL_ONLINE_STORE: _ClassVar[PurchaseChannel]
    PURCHASE_CHANNEL_ACCOUNT_PORTAL: _ClassVar[PurchaseChannel]
    PURCHASE_CHANNEL_ISP: _ClassVar[PurchaseChannel]
    PURCHASE_CHANNEL_PARTNER: _ClassVar[PurchaseChannel]

class CodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_STATUS_UNSPECIFIED: _ClassVar[CodeStatus]
    CODE_STATUS_ACTIVE: _ClassVar[CodeStatus]
    CODE_STATUS_PAUSED: _ClassVar[CodeStatus]
    CODE_STATUS_BLOCKED: _ClassVar[CodeStatus]
    CODE_STATUS_CANCELLED: _ClassVar[CodeStatus]

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_NOT_ACTIVATED: _ClassVar[Phase]
    PHASE_ACTIVE: _ClassVar[Phase]
    PHASE_GRACE: _ClassVar[Phase]
    PHASE_EXPIRED: _ClassVar[Phase]

class Entitlement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTITLEMENT_UNSPECIFIED: _ClassVar[Entitlement]
    ENTITLEMENT_PROTECTION: _ClassVar[Entitlement]
    ENTITLEMENT_SCANS: _ClassVar[Entitlement]
    ENTITLEMENT_DATABASE_UPDATES: _ClassVar[Entitlement]
    ENTITLEMENT_CLOUD_REPUTATION: _ClassVar[Entitlement]

class AutoRenewalRoute(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTO_RENEWAL_ROUTE_UNSPECIFIED: _ClassVar[AutoRenewalRoute]
    AUTO_RENEWAL_ROUTE_RESELLER_ALLSOFT: _ClassVar[AutoRenewalRoute]
    AUTO_RENEWAL_ROUTE_RESELLER_NEXWAY: _ClassVar[AutoRenewalRoute]
    AUTO_RENEWAL_ROUTE_OWN_SUPPORT: _ClassVar[AutoRenewalRoute]
    AUTO_RENEWAL_ROUTE_PROVIDER_SUPPORT: _ClassVar[AutoRenewalRoute]
    AUTO_RENEWAL_ROUTE_SELF_SERVICE: _ClassVar[AutoRenewalRoute]

class GrantPurpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANT_PURPOSE_UNSPECIFIED: _ClassVar[GrantPurpose]
    GRANT_PURPOSE_ACTIVATE: _ClassVar[GrantPurpose]
    GRANT_PURPOSE_SEND: _ClassVar[GrantPurpose]
    GRANT_PURPOSE_RESERVE: _ClassVar[GrantPurpose]
    GRANT_PURPOSE_ACCOUNT: _ClassVar[GrantPurpose]

class GrantState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANT_STATE_UNSPECIFIED: _ClassVar[GrantState]
    GRANT_STATE_PREPARED: _ClassVar[GrantState]
    GRANT_STATE_COMMITTED: _ClassVar[GrantState]
    GRANT_STATE_ABORTED: _ClassVar[GrantState]

class CallerChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALLER_CHANNEL_UNSPECIFIED: _ClassVar[CallerChannel]
    CALLER_CHANNEL_PORTAL: _ClassVar[CallerChannel]
    CALLER_CHANNEL_CONSOLE: _ClassVar[CallerChannel]
    CALLER_CHANNEL_DEVICE: _ClassVar[CallerChannel]

class ConsoleRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSOLE_ROLE_UNSPECIFIED: _ClassVar[ConsoleRole]
    CONSOLE_ROLE_ADMINISTRATOR: _ClassVar[ConsoleRole]
    CONSOLE_ROLE_MEMBER: _ClassVar[ConsoleRole]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_ARGUMENT: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
ERROR_REASON_CODE_NOT_FOUND: ErrorReason
ERROR_REASON_PRODUCT_NOT_FOUND: ErrorReason
ERROR_REASON_PRODUCT_EXISTS: ErrorReason
ERROR_REASON_TOO_MANY_FAILED_LOOKUPS: ErrorReason
ERROR_REASON_CODE_EXPIRED: ErrorReason
ERROR_REASON_CODE_BLOCKED: ErrorReason
ERROR_REASON_CODE_PAUSED: ErrorReason
ERROR_REASON_CODE_CANCELLED: ErrorReason
ERROR_REASON_NOT_A_SUBSCRIPTION: ErrorReason
ERROR_REASON_ALREADY_PAUSED: ErrorReason
ERROR_REASON_NOT_PAUSED: ErrorReason
ERROR_REASON_NOT_BLOCKED: ErrorReason
ERROR_REASON_ALREADY_BLOCKED: ErrorReason
ERROR_REASON_UNLIMITED_TERM: ErrorReason
ERROR_REASON_SUBSCRIPTION_ACTIVE: ErrorReason
ERROR_REASON_EXPIRES_EARLIER: ErrorReason
ERROR_REASON_REGION_UNAVAILABLE: ErrorReason
ERROR_REASON_TRIAL_OR_FREE: ErrorReason
ERROR_REASON_PER_USER_SERVICE: ErrorReason
ERROR_REASON_VERSION_INCOMPATIBLE: ErrorReason
ERROR_REASON_CONSOLE_ONLY: ErrorReason
ERROR_REASON_LIMITED_WHILE_AUTO_RENEW: ErrorReason
ERROR_REASON_AUTO_RENEW_WHILE_LIMITED: ErrorReason
ERROR_REASON_SAME_AS_CURRENT: ErrorReason
ERROR_REASON_GRANT_NOT_FOUND: ErrorReason
ERROR_REASON_GRANT_EXPIRED: ErrorReason
ERROR_REASON_GRANT_ABORTED: ErrorReason
ERROR_REASON_GRANT_COMMITTED: ErrorReason
ERROR_REASON_REQUEST_ID_REUSED: ErrorReason
ERROR_REASON_ALREADY_CANCELLED: ErrorReason
ERROR_REASON_NO_FREE_SLOTS: ErrorReason
CODE_KIND_UNSPECIFIED: CodeKind
CODE_KIND_LICENSE: CodeKind
CODE_KIND_SUBSCRIPTION: CodeKind
COVERAGE_UNSPECIFIED: Coverage
COVERAGE_UPDATES: Coverage
COVERAGE_UPDATES_AND_PROTECTION: Coverage
SLOT_KIND_UNSPECIFIED: SlotKind
SLOT_KIND_PER_DEVICE: SlotKind
SLOT_KIND_PER_USER: SlotKind
PURCHASE_CHANNEL_UNSPECIFIED: PurchaseChannel
PURCHASE_CHANNEL_ONLINE_STORE: PurchaseChannel
PURCHASE_CHANNEL_ACCOUNT_PORTAL: PurchaseChannel
PURCHASE_CHANNEL_ISP: PurchaseChannel
PURCHASE_CHANNEL_PARTNER: PurchaseChannel
CODE_STATUS_UNSPECIFIED: CodeStatus
CODE_STATUS_ACTIVE: CodeStatus
CODE_STATUS_PAUSED: CodeStatus
CODE_STATUS_BLOCKED: CodeStatus
CODE_STATUS_CANCELLED: CodeStatus
PHASE_UNSPECIFIED: Phase
PHASE_NOT_ACTIVATED: Phase
PHASE_ACTIVE: Phase
PHASE_GRACE: Phase
PHASE_EXPIRED: Phase
ENTITLEMENT_UNSPECIFIED: Entitlement
ENTITLEMENT_PROTECTION: Entitlement
ENTITLEMENT_SCANS: Entitlement
ENTITLEMENT_DATABASE_UPDATES: Entitlement
ENTITLEMENT_CLOUD_REPUTATION: Entitlement
AUTO_RENEWAL_ROUTE_UNSPECIFIED: AutoRenewalRoute
AUTO_RENEWAL_ROUTE_RESELLER_ALLSOFT: AutoRenewalRoute
AUTO_RENEWAL_ROUTE_RESELLER_NEXWAY: AutoRenewalRoute
AUTO_RENEWAL_ROUTE_OWN_SUPPORT: AutoRenewalRoute
AUTO_RENEWAL_ROUTE_PROVIDER_SUPPORT: AutoRenewalRoute
AUTO_RENEWAL_ROUTE_SELF_SERVICE: AutoRenewalRoute
GRANT_PURPOSE_UNSPECIFIED: GrantPurpose
GRANT_PURPOSE_ACTIVATE: GrantPurpose
GRANT_PURPOSE_SEND: GrantPurpose
GRANT_PURPOSE_RESERVE: GrantPurpose
GRANT_PURPOSE_ACCOUNT: GrantPurpose
GRANT_STATE_UNSPECIFIED: GrantState
GRANT_STATE_PREPARED: GrantState
GRANT_STATE_COMMITTED: GrantState
GRANT_STATE_ABORTED: GrantState
CALLER_CHANNEL_UNSPECIFIED: CallerChannel
CALLER_CHANNEL_PORTAL: CallerChannel
CALLER_CHANNEL_CONSOLE: CallerChannel
CALLER_CHANNEL_DEVICE: CallerChannel
CONSOLE_ROLE_UNSPECIFIED: ConsoleRole
CONSOLE_ROLE_ADMINISTRATOR: ConsoleRole
CONSOLE_ROLE_MEMBER: ConsoleRole

class Product(_message.Message):
    __slots__ = ("product_id", "display_name", "console_managed", "released_regions", "min_app_version", "max_app_version", "create_time")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_MANAGED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    display_name: str
    console_managed: bool
    released_regions: _containers.RepeatedScalarFieldContainer[str]
    min_app_version: str
    max_app_version: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, product_id: _Optional[str] = ..., display_name: _Optional[str] = ..., console_managed: _Optional[bool] = ..., released_regions: _Optional[_Iterable[str]] = ..., min_app_version: _Optional[str] = ..., max_app_version: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CodeTerms(_message.Message):
    __slots__ = ("product_id", "kind", "coverage", "duration", "unlimited", "grace_period", "max_devices", "slot_kind", "trial", "free", "auto_renew", "purchase_channel", "provider_name", "order_number")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    MAX_DEVICES_FIELD_NUMBER: _ClassVar[int]
    SLOT_KIND_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    AUTO_RENEW_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NAME_FIELD_NUMBER: _ClassVar[int]
    ORDER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    kind: CodeKind
    coverage: Coverage
    duration: _duration_pb2.Duration
    unlimited: bool
    grace_period: _duration_pb2.Duration
    max_devices: int
    slot_kind: SlotKind
    trial: bool
    free: bool
    auto_renew: bool
    purchase_channel: PurchaseChannel
    provider_name: str
    order_number: str
    def __init__(self, product_id: _Optional[str] = ..., kind: _Optional[_Union[CodeKind, str]] = ..., coverage: _Optional[_Union[Coverage, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., unlimited: _Optional[bool] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_devices: _Optional[int] = ..., slot_kind: _Optional[_Union[SlotKind, str]] = ..., trial: _Optional[bool] = ..., free: _Optional[bool] = ..., auto_renew: _Optional[bool] = ..., purchase_channel: _Optional[_Union[PurchaseChannel, str]] = ..., provider_name: _Optional[str] = ..., order_number: _Optional[str] = ...) -> None: ...

class Code(_message.Message):
    __slots__ = ("code", "terms", "status", "phase", "first_activate_time", "expire_time", "grace_end_time", "auto_renew", "prepaid_periods", "entitlements", "issue_time", "pause_time", "cancel_at_period_end", "activation_count", "console_managed")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FIRST_ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRACE_END_TIME_FIELD_NUMBER: _ClassVar[int]
    AUTO_RENEW_FIELD_NUMBER: _ClassVar[int]
    PREPAID_PERIODS_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENTS_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    PAUSE_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_AT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_MANAGED_FIELD_NUMBER: _ClassVar[int]
    code: str
    terms: CodeTerms
    status: CodeStatus
    phase: Phase
    first_activate_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    grace_end_time: _timestamp_pb2.Timestamp
    auto_renew: bool
    prepaid_periods: int
    entitlements: _containers.RepeatedScalarFieldContainer[Entitlement]
    issue_time: _timestamp_pb2.Timestamp
    pause_time: _timestamp_pb2.Timestamp
    cancel_at_period_end: bool
    activation_count: int
    console_managed: bool
    def __init__(self, code: _Optional[str] = ..., terms: _Optional[_Union[CodeTerms, _Mapping]] = ..., status: _Optional[_Union[CodeStatus, str]] = ..., phase: _Optional[_Union[Phase, str]] = ..., first_activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grace_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., auto_renew: _Optional[bool] = ..., prepaid_periods: _Optional[int] = ..., entitlements: _Optional[_Iterable[_Union[Entitlement, str]]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pause_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_at_period_end: _Optional[bool] = ..., activation_count: _Optional[int] = ..., console_managed: _Optional[bool] = ...) -> None: ...

class CreateProductRequest(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: Product
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class CreateProductResponse(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: Product
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class GetProductResponse(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: Product
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products", "next_page_token")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    next_page_token: str
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IssueCodesRequest(_message.Message):
    __slots__ = ("terms", "count", "request_id")
    TERMS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    terms: CodeTerms
    count: int
    request_id: str
    def __init__(self, terms: _Optional[_Union[CodeTerms, _Mapping]] = ..., count: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class IssueCodesResponse(_message.Message):
    __slots__ = ("codes",)
    CODES_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedCompositeFieldContainer[Code]
    def __init__(self, codes: _Optional[_Iterable[_Union[Code, _Mapping]]] = ...) -> None: ...

class GetCodeRequest(_message.Message):
    __slots__ = ("code", "on_behalf_of")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    code: str
    on_behalf_of: str
    def __init__(self, code: _Optional[str] = ..., on_behalf_of: _Optional[str] = ...) -> None: ...

class GetCodeResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class BatchGetCodesRequest(_message.Message):
    __slots__ = ("codes", "on_behalf_of")
    CODES_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    on_behalf_of: str
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., on_behalf_of: _Optional[str] = ...) -> None: ...

class BatchGetCodesResponse(_message.Message):
    __slots__ = ("codes",)
    CODES_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedCompositeFieldContainer[Code]
    def __init__(self, codes: _Optional[_Iterable[_Union[Code, _Mapping]]] = ...) -> None: ...

class WatchCodeChangesRequest(_message.Message):
    __slots__ = ("ack_sequence",)
    ACK_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ack_sequence: int
    def __init__(self, ack_sequence: _Optional[int] = ...) -> None: ...

class WatchCodeChangesResponse(_message.Message):
    __slots__ = ("sequence", "codes")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sequence: _Optional[int] = ..., codes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCodesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "product_id", "status")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    product_id: str
    status: CodeStatus
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., product_id: _Optional[str] = ..., status: _Optional[_Union[CodeStatus, str]] = ...) -> None: ...

class ListCodesResponse(_message.Message):
    __slots__ = ("codes", "next_page_token")
    CODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedCompositeFieldContainer[Code]
    next_page_token: str
    def __init__(self, codes: _Optional[_Iterable[_Union[Code, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseSubscriptionRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class PauseSubscriptionResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class ResumeSubscriptionRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ResumeSubscriptionResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class RenewSubscriptionRequest(_message.Message):
    __slots__ = ("code", "periods", "request_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    periods: int
    request_id: str
    def __init__(self, code: _Optional[str] = ..., periods: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class RenewSubscriptionResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class RecordPrepaymentRequest(_message.Message):
    __slots__ = ("code", "periods", "request_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    periods: int
    request_id: str
    def __init__(self, code: _Optional[str] = ..., periods: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class RecordPrepaymentResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
    __slots__ = ("code", "immediately")
    CODE_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATELY_FIELD_NUMBER: _ClassVar[int]
    code: str
    immediately: bool
    def __init__(self, code: _Optional[str] = ..., immediately: _Optional[bool] = ...) -> None: ...

class CancelSubscriptionResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class BlockCodeRequest(_message.Message):
    __slots__ = ("code", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BlockCodeResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class UnblockCodeRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class UnblockCodeResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ...) -> None: ...

class SetAutoRenewalRequest(_message.Message):
    __slots__ = ("code", "auto_renew")
    CODE_FIELD_NUMBER: _ClassVar[int]
    AUTO_RENEW_FIELD_NUMBER: _ClassVar[int]
    code: str
    auto_renew: bool
    def __init__(self, code: _Optional[str] = ..., auto_renew: _Optional[bool] = ...) -> None: ...

class SetAutoRenewalResponse(_message.Message):
    __slots__ = ("code", "route")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    route: AutoRenewalRoute
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ..., route: _Optional[_Union[AutoRenewalRoute, str]] = ...) -> None: ...

class GetAutoRenewalRouteRequest(_message.Message):
    __slots__ = ("code", "purchase_channel", "order_number")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ORDER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    code: str
    purchase_channel: PurchaseChannel
    order_number: str
    def __init__(self, code: _Optional[str] = ..., purchase_channel: _Optional[_Union[PurchaseChannel, str]] = ..., order_number: _Optional[str] = ...) -> None: ...

class GetAutoRenewalRouteResponse(_message.Message):
    __slots__ = ("route", "instructions")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    route: AutoRenewalRoute
    instructions: str
    def __init__(self, route: _Optional[_Union[AutoRenewalRoute, str]] = ..., instructions: _Optional[str] = ...) -> None: ...

class SupportRequest(_message.Message):
    __slots__ = ("support_request_id", "reason", "purchase_date", "full_name", "email", "order_number", "create_time")
    SUPPORT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_DATE_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ORDER_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    support_request_id: str
    reason: str
    purchase_date: str
    full_name: str
    email: str
    order_number: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, support_request_id: _Optional[str] = ..., reason: _Optional[str] = ..., purchase_date: _Optional[str] = ..., full_name: _Optional[str] = ..., email: _Optional[str] = ..., order_number: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSupportRequestRequest(_message.Message):
    __slots__ = ("support_request",)
    SUPPORT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    support_request: SupportRequest
    def __init__(self, support_request: _Optional[_Union[SupportRequest, _Mapping]] = ...) -> None: ...

class CreateSupportRequestResponse(_message.Message):
    __slots__ = ("support_request",)
    SUPPORT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    support_request: SupportRequest
    def __init__(self, support_request: _Optional[_Union[SupportRequest, _Mapping]] = ...) -> None: ...

class DeviceContext(_message.Message):
    __slots__ = ("device_id", "app_version", "region", "current_code")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CODE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    app_version: str
    region: str
    current_code: str
    def __init__(self, device_id: _Optional[str] = ..., app_version: _Optional[str] = ..., region: _Optional[str] = ..., current_code: _Optional[str] = ...) -> None: ...

class CallerContext(_message.Message):
    __slots__ = ("channel", "role")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    channel: CallerChannel
    role: ConsoleRole
    def __init__(self, channel: _Optional[_Union[CallerChannel, str]] = ..., role: _Optional[_Union[ConsoleRole, str]] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("grant_id", "code", "purpose", "device_id", "state", "expire_time", "code_details", "abort_reason", "create_time", "end_time")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CODE_DETAILS_FIELD_NUMBER: _ClassVar[int]
    ABORT_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    code: str
    purpose: GrantPurpose
    device_id: str
    state: GrantState
    expire_time: _timestamp_pb2.Timestamp
    code_details: Code
    abort_reason: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, grant_id: _Optional[str] = ..., code: _Optional[str] = ..., purpose: _Optional[_Union[GrantPurpose, str]] = ..., device_id: _Optional[str] = ..., state: _Optional[_Union[GrantState, str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., code_details: _Optional[_Union[Code, _Mapping]] = ..., abort_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PrepareGrantRequest(_message.Message):
    __slots__ = ("code", "purpose", "device", "caller", "request_id", "expire_time", "on_behalf_of")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    code: str
    purpose: GrantPurpose
    device: DeviceContext
    caller: CallerContext
    request_id: str
    expire_time: _timestamp_pb2.Timestamp
    on_behalf_of: str
    def __init__(self, code: _Optional[str] = ..., purpose: _Optional[_Union[GrantPurpose, str]] = ..., device: _Optional[_Union[DeviceContext, _Mapping]] = ..., caller: _Optional[_Union[CallerContext, _Mapping]] = ..., request_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., on_behalf_of: _Optional[str] = ...) -> None: ...

class PrepareGrantResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class CommitGrantRequest(_message.Message):
    __slots__ = ("grant_id", "request_id", "app_version")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    request_id: str
    app_version: str
    def __init__(self, grant_id: _Optional[str] = ..., request_id: _Optional[str] = ..., app_version: _Optional[str] = ...) -> None: ...

class CommitGrantResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class AbortGrantRequest(_message.Message):
    __slots__ = ("grant_id", "request_id", "reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    request_id: str
    reason: str
    def __init__(self, grant_id: _Optional[str] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortGrantResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class GetGrantRequest(_message.Message):
    __slots__ = ("grant_id",)
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    def __init__(self, grant_id: _Optional[str] = ...) -> None: ...

class GetGrantResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...
