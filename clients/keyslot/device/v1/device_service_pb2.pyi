import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from keyslot.license.v1 import license_service_pb2 as _license_service_pb2
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
    ERROR_REASON_LICENSE_SERVICE_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_ACCOUNT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_DEVICE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_SUBSCRIPTION_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_SUBSCRIPTION_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_DELIVERY_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_CONNECTION_CODE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_CONNECTION_CODE_USED: _ClassVar[ErrorReason]
    ERROR_REASON_CONNECTION_CODE_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_A_CONSOLE_ACCOUNT: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_MANY_FAILED_LOOKUPS: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_BLOCKED: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_PAUSED: _ClassVar[ErrorReason]
    ERROR_REASON_CODE_CANCELLED: _ClassVar[ErrorReason]
    ERROR_REASON_DEVICE_NOT_CONNECTED: _ClassVar[ErrorReason]
    ERROR_REASON_EXPIRES_EARLIER: _ClassVar[ErrorReason]
    ERROR_REASON_DELIVERY_PENDING: _ClassVar[ErrorReason]
    ERROR_REASON_NO_FREE_SLOTS: _ClassVar[ErrorReason]
    ERROR_REASON_REGION_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_TRIAL_OR_FREE: _ClassVar[ErrorReason]
    ERROR_REASON_PER_USER_SERVICE: _ClassVar[ErrorReason]
    ERROR_REASON_VERSION_INCOMPATIBLE: _ClassVar[ErrorReason]
    ERROR_REASON_CONSOLE_ONLY: _ClassVar[ErrorReason]
    ERROR_REASON_LIMITED_WHILE_AUTO_RENEW: _ClassVar[ErrorReason]
    ERROR_REASON_AUTO_RENEW_WHILE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_SUBSCRIPTION_ACTIVE: _ClassVar[ErrorReason]
    ERROR_REASON_SAME_AS_CURRENT: _ClassVar[ErrorReason]
    ERROR_REASON_RESERVE_ALREADY_SET: _ClassVar[ErrorReason]
    ERROR_REASON_NO_CURRENT_LICENSE: _ClassVar[ErrorReason]
    ERROR_REASON_NO_RESERVE: _ClassVar[ErrorReason]
    ERROR_REASON_RESERVE_NOT_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_CURRENT_NOT_BLOCKED: _ClassVar[ErrorReason]
    ERROR_REASON_DELIVERY_NOT_PENDING: _ClassVar[ErrorReason]
    ERROR_REASON_DELIVERY_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_GRANT_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_ID_REUSED: _ClassVar[ErrorReason]
    ERROR_REASON_GRANT_ABORTED: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_MANY_MESSAGES: _ClassVar[ErrorReason]

class AccountKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_KIND_UNSPECIFIED: _ClassVar[AccountKind]
    ACCOUNT_KIND_PERSONAL: _ClassVar[AccountKind]
    ACCOUNT_KIND_CONSOLE: _ClassVar[AccountKind]

class Platform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLATFORM_UNSPECIFIED: _ClassVar[Platform]
    PLATFORM_WINDOWS: _ClassVar[Platform]
    PLATFORM_MACOS: _ClassVar[Platform]
    PLATFORM_ANDROID: _ClassVar[Platform]
    PLATFORM_IOS: _ClassVar[Platform]
    PLATFORM_LINUX: _ClassVar[Platform]

class SlotState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_STATE_UNSPECIFIED: _ClassVar[SlotState]
    SLOT_STATE_PENDING: _ClassVar[SlotState]
    SLOT_STATE_ACTIVE: _ClassVar[SlotState]
    SLOT_STATE_RELEASED: _ClassVar[SlotState]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_CANCELLED: _ClassVar[DeliveryState]
    DELIVERY_STATE_EXPIRED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FAILED: _ClassVar[DeliveryState]

class ReserveState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVE_STATE_UNSPECIFIED: _ClassVar[ReserveState]
    RESERVE_STATE_WAITING: _ClassVar[ReserveState]
    RESERVE_STATE_ACTIVATED: _ClassVar[ReserveState]
    RESERVE_STATE_FAILED: _ClassVar[ReserveState]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_ARGUMENT: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
ERROR_REASON_LICENSE_SERVICE_UNAVAILABLE: ErrorReason
ERROR_REASON_ACCOUNT_NOT_FOUND: ErrorReason
ERROR_REASON_DEVICE_NOT_FOUND: ErrorReason
ERROR_REASON_SUBSCRIPTION_NOT_FOUND: ErrorReason
ERROR_REASON_SUBSCRIPTION_EXISTS: ErrorReason
ERROR_REASON_DELIVERY_NOT_FOUND: ErrorReason
ERROR_REASON_CONNECTION_CODE_NOT_FOUND: ErrorReason
ERROR_REASON_CONNECTION_CODE_USED: ErrorReason
ERROR_REASON_CONNECTION_CODE_EXPIRED: ErrorReason
ERROR_REASON_NOT_A_CONSOLE_ACCOUNT: ErrorReason
ERROR_REASON_CODE_NOT_FOUND: ErrorReason
ERROR_REASON_TOO_MANY_FAILED_LOOKUPS: ErrorReason
ERROR_REASON_CODE_EXPIRED: ErrorReason
ERROR_REASON_CODE_BLOCKED: ErrorReason
ERROR_REASON_CODE_PAUSED: ErrorReason
ERROR_REASON_CODE_CANCELLED: ErrorReason
ERROR_REASON_DEVICE_NOT_CONNECTED: ErrorReason
ERROR_REASON_EXPIRES_EARLIER: ErrorReason
ERROR_REASON_DELIVERY_PENDING: ErrorReason
ERROR_REASON_NO_FREE_SLOTS: ErrorReason
ERROR_REASON_REGION_UNAVAILABLE: ErrorReason
ERROR_REASON_TRIAL_OR_FREE: ErrorReason
ERROR_REASON_PER_USER_SERVICE: ErrorReason
ERROR_REASON_VERSION_INCOMPATIBLE: ErrorReason
ERROR_REASON_CONSOLE_ONLY: ErrorReason
ERROR_REASON_LIMITED_WHILE_AUTO_RENEW: ErrorReason
ERROR_REASON_AUTO_RENEW_WHILE_LIMITED: ErrorReason
ERROR_REASON_SUBSCRIPTION_ACTIVE: ErrorReason
ERROR_REASON_SAME_AS_CURRENT: ErrorReason
ERROR_REASON_RESERVE_ALREADY_SET: ErrorReason
ERROR_REASON_NO_CURRENT_LICENSE: ErrorReason
ERROR_REASON_NO_RESERVE: ErrorReason
ERROR_REASON_RESERVE_NOT_FAILED: ErrorReason
ERROR_REASON_CURRENT_NOT_BLOCKED: ErrorReason
ERROR_REASON_DELIVERY_NOT_PENDING: ErrorReason
ERROR_REASON_DELIVERY_EXPIRED: ErrorReason
ERROR_REASON_GRANT_EXPIRED: ErrorReason
ERROR_REASON_REQUEST_ID_REUSED: ErrorReason
ERROR_REASON_GRANT_ABORTED: ErrorReason
ERROR_REASON_TOO_MANY_MESSAGES: ErrorReason
ACCOUNT_KIND_UNSPECIFIED: AccountKind
ACCOUNT_KIND_PERSONAL: AccountKind
ACCOUNT_KIND_CONSOLE: AccountKind
PLATFORM_UNSPECIFIED: Platform
PLATFORM_WINDOWS: Platform
PLATFORM_MACOS: Platform
PLATFORM_ANDROID: Platform
PLATFORM_IOS: Platform
PLATFORM_LINUX: Platform
SLOT_STATE_UNSPECIFIED: SlotState
SLOT_STATE_PENDING: SlotState
SLOT_STATE_ACTIVE: SlotState
SLOT_STATE_RELEASED: SlotState
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_CANCELLED: DeliveryState
DELIVERY_STATE_EXPIRED: DeliveryState
DELIVERY_STATE_FAILED: DeliveryState
RESERVE_STATE_UNSPECIFIED: ReserveState
RESERVE_STATE_WAITING: ReserveState
RESERVE_STATE_ACTIVATED: ReserveState
RESERVE_STATE_FAILED: ReserveState

class Account(_message.Message):
    __slots__ = ("account_id", "display_name", "kind", "create_time")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    display_name: str
    kind: AccountKind
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., kind: _Optional[_Union[AccountKind, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsoleMember(_message.Message):
    __slots__ = ("member_id", "account_id", "display_name", "role", "create_time")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    account_id: str
    display_name: str
    role: _license_service_pb2.ConsoleRole
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, member_id: _Optional[str] = ..., account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[_license_service_pb2.ConsoleRole, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("account_id", "code", "add_time", "code_details", "used_slots")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ADD_TIME_FIELD_NUMBER: _ClassVar[int]
    CODE_DETAILS_FIELD_NUMBER: _ClassVar[int]
    USED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    add_time: _timestamp_pb2.Timestamp
    code_details: _license_service_pb2.Code
    used_slots: int
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., add_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., code_details: _Optional[_Union[_license_service_pb2.Code, _Mapping]] = ..., used_slots: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "account_id", "platform", "app_version", "region", "display_name", "current_code", "connect_time", "update_time", "disconnect_time", "last_check_in_time", "current_code_from_account")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CODE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECK_IN_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CODE_FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    account_id: str
    platform: Platform
    app_version: str
    region: str
    display_name: str
    current_code: str
    connect_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    disconnect_time: _timestamp_pb2.Timestamp
    last_check_in_time: _timestamp_pb2.Timestamp
    current_code_from_account: bool
    def __init__(self, device_id: _Optional[str] = ..., account_id: _Optional[str] = ..., platform: _Optional[_Union[Platform, str]] = ..., app_version: _Optional[str] = ..., region: _Optional[str] = ..., display_name: _Optional[str] = ..., current_code: _Optional[str] = ..., connect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disconnect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_check_in_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_code_from_account: _Optional[bool] = ...) -> None: ...

class Slot(_message.Message):
    __slots__ = ("code", "device_id", "state", "state_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    device_id: str
    state: SlotState
    state_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., device_id: _Optional[str] = ..., state: _Optional[_Union[SlotState, str]] = ..., state_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("delivery_id", "account_id", "device_id", "code", "state", "failure_reason", "grant_id", "create_time", "expire_time", "end_time")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    account_id: str
    device_id: str
    code: str
    state: DeliveryState
    failure_reason: str
    grant_id: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, delivery_id: _Optional[str] = ..., account_id: _Optional[str] = ..., device_id: _Optional[str] = ..., code: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., failure_reason: _Optional[str] = ..., grant_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason", "message", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SendResult(_message.Message):
    __slots__ = ("device_id", "delivery", "refusal")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    delivery: Delivery
    refusal: Refusal
    def __init__(self, device_id: _Optional[str] = ..., delivery: _Optional[_Union[Delivery, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...

class Reserve(_message.Message):
    __slots__ = ("code", "state", "failure_reason", "grant_id", "add_time", "state_time", "code_details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CODE_DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: str
    state: ReserveState
    failure_reason: str
    grant_id: str
    add_time: _timestamp_pb2.Timestamp
    state_time: _timestamp_pb2.Timestamp
    code_details: _license_service_pb2.Code
    def __init__(self, code: _Optional[str] = ..., state: _Optional[_Union[ReserveState, str]] = ..., failure_reason: _Optional[str] = ..., grant_id: _Optional[str] = ..., add_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., code_details: _Optional[_Union[_license_service_pb2.Code, _Mapping]] = ...) -> None: ...

class SubscriptionDevice(_message.Message):
    __slots__ = ("device", "slot", "delivery", "through_account")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    THROUGH_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    device: Device
    slot: Slot
    delivery: Delivery
    through_account: bool
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., delivery: _Optional[_Union[Delivery, _Mapping]] = ..., through_account: _Optional[bool] = ...) -> None: ...

class OutboxMessage(_message.Message):
    __slots__ = ("message_id", "account_id", "email", "subject", "body", "link_token", "link_expire_time", "create_time")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LINK_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    account_id: str
    email: str
    subject: str
    body: str
    link_token: str
    link_expire_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, message_id: _Optional[str] = ..., account_id: _Optional[str] = ..., email: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., link_token: _Optional[str] = ..., link_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account", "account_credential")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    account: Account
    account_credential: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., account_credential: _Optional[str] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class AddConsoleMemberRequest(_message.Message):
    __slots__ = ("account_id", "display_name", "role")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    display_name: str
    role: _license_service_pb2.ConsoleRole
    def __init__(self, account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[_license_service_pb2.ConsoleRole, str]] = ...) -> None: ...

class AddConsoleMemberResponse(_message.Message):
    __slots__ = ("member", "member_credential")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    member: ConsoleMember
    member_credential: str
    def __init__(self, member: _Optional[_Union[ConsoleMember, _Mapping]] = ..., member_credential: _Optional[str] = ...) -> None: ...

class AddSubscriptionRequest(_message.Message):
    __slots__ = ("account_id", "code", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddSubscriptionResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ...) -> None: ...

class RemoveSubscriptionRequest(_message.Message):
    __slots__ = ("account_id", "code")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class RemoveSubscriptionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "next_page_token")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    next_page_token: str
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListSubscriptionDevicesRequest(_message.Message):
    __slots__ = ("account_id", "code")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ListSubscriptionDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[SubscriptionDevice]
    def __init__(self, devices: _Optional[_Iterable[_Union[SubscriptionDevice, _Mapping]]] = ...) -> None: ...

class CreateConnectionCodeRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class CreateConnectionCodeResponse(_message.Message):
    __slots__ = ("connection_code", "expire_time")
    CONNECTION_CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    connection_code: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, connection_code: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConnectDeviceRequest(_message.Message):
    __slots__ = ("connection_code", "platform", "app_version", "region", "display_name")
    CONNECTION_CODE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    connection_code: str
    platform: Platform
    app_version: str
    region: str
    display_name: str
    def __init__(self, connection_code: _Optional[str] = ..., platform: _Optional[_Union[Platform, str]] = ..., app_version: _Optional[str] = ..., region: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class ConnectDeviceResponse(_message.Message):
    __slots__ = ("device", "device_credential")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    device: Device
    device_credential: str
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., device_credential: _Optional[str] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class GetDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices", "next_page_token")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    next_page_token: str
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateDeviceRequest(_message.Message):
    __slots__ = ("device", "update_mask")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    device: Device
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class DisconnectDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class DisconnectDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class SendDownloadLinkRequest(_message.Message):
    __slots__ = ("account_id", "code", "email")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    email: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class SendDownloadLinkResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: OutboxMessage
    def __init__(self, message: _Optional[_Union[OutboxMessage, _Mapping]] = ...) -> None: ...

class ListOutboxRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOutboxResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[OutboxMessage]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[OutboxMessage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CheckInRequest(_message.Message):
    __slots__ = ("app_version",)
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    app_version: str
    def __init__(self, app_version: _Optional[str] = ...) -> None: ...

class CheckInResponse(_message.Message):
    __slots__ = ("device", "code", "pending_deliveries", "reserve", "server_time")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    PENDING_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    device: Device
    code: _license_service_pb2.Code
    pending_deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    reserve: Reserve
    server_time: _timestamp_pb2.Timestamp
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., code: _Optional[_Union[_license_service_pb2.Code, _Mapping]] = ..., pending_deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., reserve: _Optional[_Union[Reserve, _Mapping]] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActivateDeviceRequest(_message.Message):
    __slots__ = ("code", "request_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    request_id: str
    def __init__(self, code: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ActivateDeviceResponse(_message.Message):
    __slots__ = ("device", "code")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    code: _license_service_pb2.Code
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., code: _Optional[_Union[_license_service_pb2.Code, _Mapping]] = ...) -> None: ...

class SendSubscriptionRequest(_message.Message):
    __slots__ = ("account_id", "code", "device_ids", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., device_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SendSubscriptionResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SendResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SendResult, _Mapping]]] = ...) -> None: ...

class CompleteDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id", "request_id")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    request_id: str
    def __init__(self, delivery_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CompleteDeliveryResponse(_message.Message):
    __slots__ = ("delivery", "code")
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    code: _license_service_pb2.Code
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ..., code: _Optional[_Union[_license_service_pb2.Code, _Mapping]] = ...) -> None: ...

class CancelDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id", "request_id")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    request_id: str
    def __init__(self, delivery_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelDeliveryResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class GetDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...

class GetDeliveryResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("account_id", "device_id", "state", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    device_id: str
    state: DeliveryState
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., device_id: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddReserveCodeRequest(_message.Message):
    __slots__ = ("device_id", "code", "request_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    code: str
    request_id: str
    def __init__(self, device_id: _Optional[str] = ..., code: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddReserveCodeResponse(_message.Message):
    __slots__ = ("reserve",)
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    reserve: Reserve
    def __init__(self, reserve: _Optional[_Union[Reserve, _Mapping]] = ...) -> None: ...

class RemoveReserveCodeRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class RemoveReserveCodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLicenseDetailsRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class GetLicenseDetailsResponse(_message.Message):
    __slots__ = ("device", "code", "reserve")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    code: _license_service_pb2.Code
    reserve: Reserve
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., code: _Optional[_Union[_license_service_pb2.Code, _Mapping]] = ..., reserve: _Optional[_Union[Reserve, _Mapping]] = ...) -> None: ...

class RetryReserveActivationRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class RetryReserveActivationResponse(_message.Message):
    __slots__ = ("reserve",)
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    reserve: Reserve
    def __init__(self, reserve: _Optional[_Union[Reserve, _Mapping]] = ...) -> None: ...

class ActivateReserveNowRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class ActivateReserveNowResponse(_message.Message):
    __slots__ = ("reserve",)
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    reserve: Reserve
    def __init__(self, reserve: _Optional[_Union[Reserve, _Mapping]] = ...) -> None: ...

class RemoveLicenseKeyRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class RemoveLicenseKeyResponse(_message.Message):
    __slots__ = ("device", "reserve")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    reserve: Reserve
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., reserve: _Optional[_Union[Reserve, _Mapping]] = ...) -> None: ...
