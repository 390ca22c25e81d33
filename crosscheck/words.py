"""What each hint of ``crosscheck.diagnose`` means, in a sentence, in English and in Korean.

The diagnosis itself (``Divergence.diagnosis``) says what was measured, with the numbers, in
English. These sentences say what the hint means and where to look, for a student: the commands
that teach (``handbp zoo``, ``handbp explain``, ``handbp exercise``) print them with ``--lang en``
or ``--lang ko``. The Korean uses the glossary of docs/teaching.ko.md.
"""
LANGS = ("en", "ko")

HINT_TEXT = {
    "transpose": {
        "en": "a missing or extra transpose: torch's layout has weight (out_features, in_features)",
        "ko": "전치(transpose)가 빠졌거나 하나 더 들어갔습니다: torch의 레이아웃에서 weight는 "
              "(out_features, in_features)입니다",
    },
    "shape": {
        "en": "the shape is wrong: often a sum over the batch that is missing",
        "ko": "모양(shape)이 틀렸습니다: 배치에 대한 합이 빠진 경우가 많습니다",
    },
    "missing": {
        "en": "a value is missing on one side",
        "ko": "한쪽에 값이 없습니다",
    },
    "nonfinite": {
        "en": "NaN or Inf where torch's value is finite: an overflow, 0/0 or log(0) in handbp's arithmetic",
        "ko": "torch의 값은 유한한데 handbp에 NaN이나 Inf가 나타났습니다: handbp의 계산 안에서 "
              "오버플로, 0/0, log(0) 가운데 하나가 일어났습니다",
    },
    "accumulated": {
        "en": "gradients were not cleared between steps (zero_grad)",
        "ko": "스텝 사이에 기울기를 지우지 않았습니다(zero_grad)",
    },
    "reset": {
        "en": "the optimizer's buffer starts afresh each step instead of being carried over",
        "ko": "옵티마이저의 버퍼가 다음 스텝으로 이어지지 않고 스텝마다 새로 시작됩니다",
    },
    "never_updated": {
        "en": "the parameter did not change in this step while torch's did: the update never reached it "
              "(a dw/dW typo does exactly this)",
        "ko": "torch의 파라미터는 바뀌었는데 handbp의 파라미터는 이 스텝에서 바뀌지 않았습니다: "
              "업데이트가 파라미터에 닿지 않았습니다(dw/dW 오타가 바로 이렇게 됩니다)",
    },
    "weight_decay": {
        "en": "the update differs by a multiple of the parameter itself: weight decay applied twice, "
              "not at all, or with the wrong coefficient",
        "ko": "업데이트가 파라미터 자신의 몇 배만큼 다릅니다: 가중치 감쇠(weight decay)가 두 번 "
              "들어갔거나, 빠졌거나, 계수가 틀렸습니다",
    },
    "zero": {
        "en": "zero everywhere where torch's is not: this never received a gradient (the backward does not "
              "reach it, or writes it elsewhere)",
        "ko": "torch의 값은 0이 아닌데 handbp는 모두 0(또는 없음)입니다: 기울기가 여기까지 오지 않았거나 "
              "다른 곳에 저장되었습니다",
    },
    "sign": {
        "en": "the sign is flipped",
        "ko": "부호가 뒤집혔습니다",
    },
    "factor": {
        "en": "off by a constant factor everywhere: an extra or missing factor such as 1/n or 2",
        "ko": "모든 원소가 같은 배수만큼 다릅니다: 1/n이나 2 같은 곱이 빠졌거나 하나 더 들어갔습니다",
    },
    "local_derivative": {
        "en": "the upstream gradient arriving here matched torch's, the one returned does not: this module's "
              "own local derivative is wrong (taken at the wrong point, or a wrong Jacobian)",
        "ko": "이 모듈에 들어온 상류 기울기는 torch와 같은데 돌려준 기울기가 다릅니다: 이 모듈의 "
              "국소 미분이 틀렸습니다(엉뚱한 값에서 미분했거나 야코비안이 틀렸습니다)",
    },
    "forward": {
        "en": "the input matched torch's, the output does not: the forward is wrong",
        "ko": "입력은 torch와 같은데 출력이 다릅니다: 순전파가 틀렸습니다",
    },
    "param_grad": {
        "en": "the upstream gradient matched torch's, this parameter's gradient does not: the module's "
              "formula for it is wrong",
        "ko": "상류 기울기는 torch와 같은데 이 파라미터의 기울기가 다릅니다: 이 기울기를 구하는 식이 "
              "틀렸습니다",
    },
}

# the words of a per-tensor verdict (handbp exercise check)
VERDICT = {
    "exact": {"en": "exact", "ko": "정확히 같음"},
    "close": {"en": "close", "ko": "허용 오차 안"},
    "wrong": {"en": "wrong", "ko": "틀림"},
}


def check_lang(lang, owner="lang"):
    """``lang`` if it is one of ``LANGS``; a ValueError naming it otherwise."""
    if lang not in LANGS:
        raise ValueError(f"{owner}: expected one of {', '.join(LANGS)}, got {lang!r}")
    return lang


def hint_text(hint, lang="en"):
    """The sentence for ``hint`` in ``lang`` ('' for None or an unknown hint)."""
    return HINT_TEXT.get(hint, {}).get(check_lang(lang), "") if hint else ""
