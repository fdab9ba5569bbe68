# Times as the console shows them everywhere, Django admin included: to the second, in UTC,
# with the zone said (the English defaults stop at the minute, "Nov. 30, 2026, 8:35 a.m.").
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
