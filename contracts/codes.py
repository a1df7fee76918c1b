"""Code lists of ../shared/spec/inbox.md and the rule catalogue of rules.md.

Everything a rule or a report needs to *name* lives here once: province codes,
the valid values of every code column, and for every rule code its name,
severity, family and bilingual title.
"""
from __future__ import annotations

from dataclasses import dataclass

PROVINCES: tuple[str, ...] = (
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35",
    "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54",
    "61", "62", "63", "64", "65",
)

PROVINCE_NAMES: dict[str, tuple[str, str]] = {
    "11": ("北京", "Beijing"), "12": ("天津", "Tianjin"), "13": ("河北", "Hebei"),
    "14": ("山西", "Shanxi"), "15": ("内蒙古", "Inner Mongolia"), "21": ("辽宁", "Liaoning"),
    "22": ("吉林", "Jilin"), "23": ("黑龙江", "Heilongjiang"), "31": ("上海", "Shanghai"),
    "32": ("江苏", "Jiangsu"), "33": ("浙江", "Zhejiang"), "34": ("安徽", "Anhui"),
    "35": ("福建", "Fujian"), "36": ("江西", "Jiangxi"), "37": ("山东", "Shandong"),
    "41": ("河南", "Henan"), "42": ("湖北", "Hubei"), "43": ("湖南", "Hunan"),
    "44": ("广东", "Guangdong"), "45": ("广西", "Guangxi"), "46": ("海南", "Hainan"),
    "50": ("重庆", "Chongqing"), "51": ("四川", "Sichuan"), "52": ("贵州", "Guizhou"),
    "53": ("云南", "Yunnan"), "54": ("西藏", "Tibet"), "61": ("陕西", "Shaanxi"),
    "62": ("甘肃", "Gansu"), "63": ("青海", "Qinghai"), "64": ("宁夏", "Ningxia"),
    "65": ("新疆", "Xinjiang"),
}

DATASETS: tuple[str, ...] = ("persons", "relationships", "transfers", "settlements", "balances")

INSUTYPES = ("310", "390")
EMPLOYEE_INSUTYPE = "310"
INSU_STATUSES = ("ACTIVE", "SUSPENDED", "TERMINATED")
EVENT_TYPES = ("ESTABLISH", "DISSOLVE")
CHANNELS = ("NATIONAL_APP", "PROVINCIAL_PLATFORM", "COUNTER")
SIDES = ("OUT", "IN")
TRANSFER_STATUSES = ("SUCCESS", "FAILED")
SETTLEMENT_STATUSES = ("NORMAL", "REFUND")
ACCOUNTS = ("PERSONAL", "QUOTA")
INSTITUTION_TYPES = ("HOSPITAL", "PHARMACY")

NEAR_RELATIVE_CODES = (
    "SPOUSE", "PARENT", "CHILD", "SIBLING", "GRANDPARENT_PATERNAL",
    "GRANDPARENT_MATERNAL", "GRANDCHILD_SON", "GRANDCHILD_DAUGHTER",
)
OTHER_RELATION_CODES = (
    "PARENT_IN_LAW", "CHILD_IN_LAW", "SIBLING_IN_LAW", "UNCLE_AUNT",
    "NEPHEW_NIECE", "COUSIN", "OTHER",
)
RELATION_CODES = NEAR_RELATIVE_CODES + OTHER_RELATION_CODES

ELIGIBLE_EXPENSE_TYPES = ("OUTPATIENT", "INPATIENT", "PHARMACY", "RESIDENT_PREMIUM", "LTC_PREMIUM")
PREMIUM_EXPENSE_TYPES = ("RESIDENT_PREMIUM", "LTC_PREMIUM")
INELIGIBLE_EXPENSE_TYPES = ("COMMERCIAL_INSURANCE", "CASH_WITHDRAWAL", "NON_MEDICAL_GOODS")
EXPENSE_TYPES = ELIGIBLE_EXPENSE_TYPES + INELIGIBLE_EXPENSE_TYPES
# Expense types paid at an institution (fixmedins_code required).
INSTITUTION_EXPENSE_TYPES = ("OUTPATIENT", "INPATIENT", "PHARMACY") + INELIGIBLE_EXPENSE_TYPES


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str  # ERROR | WARNING
    dataset: str  # manifest | persons | relationships | transfers | settlements | balances
    zh: str
    en: str

    @property
    def family(self) -> str:
        return self.code[0]


RULES: dict[str, Rule] = {r.code: r for r in (
    Rule("F01", "MISSING_EXPORT", "ERROR", "manifest", "省份未报送", "Missing provincial export"),
    Rule("F02", "MANIFEST_MISMATCH", "ERROR", "manifest", "清单不一致", "File does not match its manifest"),
    Rule("F03", "SCHEMA_INVALID", "ERROR", "manifest", "文件格式无效", "File cannot be read"),
    Rule("F04", "ROW_INVALID", "ERROR", "", "记录不合规", "Row breaks the inbox contract"),
    Rule("F05", "DUPLICATE_RECORD", "ERROR", "", "重复记录", "Duplicate record"),
    Rule("F06", "UNKNOWN_PERSON", "ERROR", "", "人员未知", "Unknown person"),
    Rule("S01", "NOT_NEAR_RELATIVE", "ERROR", "relationships", "非近亲属", "Not a near relative"),
    Rule("S02", "KINSHIP_IMPLAUSIBLE", "ERROR", "relationships", "亲属关系与年龄矛盾", "Kinship contradicts birth dates"),
    Rule("S03", "NO_COMMITMENT", "ERROR", "relationships", "未签承诺书", "Commitment letter not signed"),
    Rule("S04", "SELF_SHARING", "ERROR", "relationships", "自我共济", "Sharing with oneself"),
    Rule("S05", "NO_VALID_RELATIONSHIP", "ERROR", "transfers", "无有效共济关系", "No valid active relationship"),
    Rule("S06", "SHARER_NOT_EMPLOYEE", "ERROR", "", "共济人非在职参保职工", "Sharer not an active employee-insured person"),
    Rule("S07", "BENEFICIARY_NOT_INSURED", "ERROR", "", "被共济人未正常参保", "Beneficiary not actively insured"),
    Rule("S08", "OVER_AMOUNT_LIMIT", "ERROR", "transfers", "单笔转账超限额", "Transfer over the amount limit"),
    Rule("S09", "OVER_DAILY_COUNT", "ERROR", "transfers", "单日转账超笔数", "Too many transfers in a day"),
    Rule("S10", "INSUFFICIENT_BALANCE", "ERROR", "transfers", "个人账户余额不足", "Personal account balance insufficient"),
    Rule("S11", "RESHARING", "ERROR", "transfers", "再共济", "Re-sharing of received quota"),
    Rule("S12", "FORWARDING", "WARNING", "transfers", "疑似转手共济", "Forwarding of received quota"),
    Rule("S13", "CYCLE", "WARNING", "transfers", "循环转账", "Transfer cycle"),
    Rule("S14", "INELIGIBLE_EXPENSE", "ERROR", "settlements", "不符合支付范围", "Ineligible expense"),
    Rule("S15", "NOT_DESIGNATED", "ERROR", "settlements", "非定点机构", "Institution not designated"),
    Rule("S16", "PARTIAL_PREMIUM", "ERROR", "settlements", "保费未足额缴纳", "Premium not paid in full"),
    Rule("S17", "OVER_BURDEN", "ERROR", "settlements", "超个人负担支付", "Wallet pays more than the personal burden"),
    Rule("S18", "QUOTA_OVERSPEND", "ERROR", "settlements", "共济额度透支", "Quota overspent"),
    Rule("S20", "REFUND_UNMATCHED", "ERROR", "settlements", "退费无法匹配", "Refund does not match a settlement"),
    Rule("S21", "DISSOLVE_INACTIVE", "ERROR", "relationships", "解除无效关系", "Dissolving an inactive relationship"),
    Rule("X01", "MISSING_IN", "ERROR", "transfers", "转入方缺失", "IN side missing"),
    Rule("X02", "MISSING_OUT", "ERROR", "transfers", "转出方缺失", "OUT side missing"),
    Rule("X03", "AMOUNT_MISMATCH", "ERROR", "transfers", "双边金额不一致", "Amounts of the two sides differ"),
    Rule("X04", "FIELD_MISMATCH", "ERROR", "transfers", "双边字段不一致", "Fields of the two sides differ"),
    Rule("B01", "QUOTA_BALANCE_BREAK", "ERROR", "balances", "共济额度余额不符", "Closing quota balance break"),
    Rule("B02", "OPENING_BALANCE_BREAK", "WARNING", "balances", "期初余额不符", "Opening balance break"),
)}

FAMILIES: dict[str, tuple[str, str]] = {
    "F": ("文件与记录", "Files and rows"),
    "S": ("共济规则", "Sharing rules"),
    "X": ("双边核对", "Two-sided matching"),
    "B": ("余额核对", "Balances"),
}
