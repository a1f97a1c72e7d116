"""Every text the candidate reads, in Chinese (first) and English.

Screens ask for a key and a language; a missing key shows the key itself and is logged, so a
typo never crashes an interview. A text that stays on screen (a refusal, a self-test hint)
is kept as a `Message` (key + params, or both languages) and drawn again on a language
switch, never stored already translated. No candidate data is ever put in these tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

LANGS = ("zh", "en")

TEXT: dict[str, tuple[str, str]] = {
    "switch_lang": ("English", "中文"),
    "help": ("需要帮助", "Need help"),
    "device_footer": ("终端 {device} · 面试数据在本机加密保存", "Terminal {device} · interview data is encrypted on this device"),
    # idle
    "idle_title": ("欢迎参加面试", "Welcome to your interview"),
    "idle_sub": ("请用企业微信扫描二维码签到", "Scan the QR code with WeCom to sign in"),
    "idle_sub_code": ("请使用面试邀请中的面试码签到", "Sign in with the interview code from your invitation"),
    "idle_steps": ("1  打开企业微信    2  扫一扫    3  在手机上确认",
                   "1  Open WeCom    2  Scan    3  Confirm on your phone"),
    "idle_code_btn": ("使用面试码签到", "Sign in with interview code"),
    "idle_qr_expires": ("二维码每 {s} 秒自动更新", "The code refreshes every {s} s"),
    "idle_no_qr": ("扫码签到暂不可用，请使用面试码", "QR sign-in is not available: use your interview code"),
    "code_title": ("输入面试码", "Enter your interview code"),
    "code_sub": ("面试码在您收到的面试邀请中", "You will find the code in your interview invitation"),
    "code_ok": ("签到", "Sign in"),
    "code_back": ("返回", "Back"),
    "code_clear": ("清除", "Clear"),
    # verifying
    "verifying_title": ("正在确认您的身份…", "Checking your sign-in…"),
    "verifying_sub": ("请稍候，这只需要几秒钟", "Please wait, this takes a few seconds"),
    # welcome
    "welcome_title": ("您好，欢迎！", "Hello, welcome!"),
    "welcome_who": ("签到身份：{name}", "Signed in as {name}"),
    "welcome_job": ("应聘职位：{job}", "Position: {job}"),
    "welcome_plan": ("本次面试共 {n} 个问题，约 {min} 分钟。每题有准备时间，回答时请看着屏幕。",
                     "This interview has {n} questions and takes about {min} minutes. You get time to prepare each answer; please look at the screen while you answer."),
    "consent_title": ("开始前，请阅读并同意", "Please read and agree"),
    "consent_1": ("本次面试将录制您的视频和声音", "Your video and voice will be recorded"),
    "consent_2": ("设备会在本机分析您的回答内容、语音和面部表现（如视线、是否在画面中）",
                  "The terminal analyses your answers, voice and face (e.g. gaze, presence) on the device"),
    "consent_3": ("结果加密保存，仅提供给招聘团队，由招聘人员做最终决定",
                  "Results are stored encrypted, shared only with the hiring team, and a person makes the decision"),
    "consent_4": ("您可以随时按“需要帮助”联系工作人员", "You can press 'Need help' at any time to call a member of staff"),
    "consent_yes": ("我同意，开始", "I agree, start"),
    "consent_no": ("我不同意", "I do not agree"),
    # device check
    "check_title": ("设备检查", "Device check"),
    "check_sub": ("请把脸放在椭圆框内，说句话试试麦克风", "Keep your face inside the oval and say a few words to test the microphone"),
    "check_camera": ("摄像头", "Camera"),
    "check_face": ("人脸位置", "Face position"),
    "check_mic": ("麦克风", "Microphone"),
    "check_running": ("正在检查…", "Checking…"),
    "check_ok": ("正常", "OK"),
    "check_fix": ("请调整", "Needs attention"),
    "check_continue": ("继续", "Continue"),
    "check_retry": ("重新检查", "Check again"),
    "check_face_ok": ("很好，保持这个位置", "Good, stay like this"),
    "check_face_missing": ("请把脸移到椭圆框中", "Move your face into the oval"),
    "check_speak": ("请说话，观察音量条", "Speak and watch the level bar"),
    # A device fault the candidate cannot fix (the technical detail goes to the log and the
    # technician panel, never to this screen).
    "check_staff": ("设备需要工作人员检查一下。请稍候，或按右上角的“需要帮助”，工作人员马上来帮您。",
                    "The terminal needs a quick check by staff. Please wait, or press 'Need help' at the top right and someone will come to help you."),
    # question
    "q_progress": ("第 {i} / {n} 题", "Question {i} of {n}"),
    "q_prepare": ("准备时间", "Preparation"),
    "q_answer": ("回答时间", "Answer time"),
    "q_prepare_hint": ("准备好后点“开始回答”；倒计时结束会自动开始录制",
                       "Tap 'Start answering' when ready; recording starts by itself at zero"),
    "q_answer_hint": ("时间到会自动保存您的回答", "Your answer is saved when the time is up"),
    "q_start": ("开始回答", "Start answering"),
    "q_done": ("回答完毕", "I'm done"),
    "q_recording": ("● 正在录制", "● Recording"),
    "q_saving": ("正在保存您的回答…", "Saving your answer…"),
    "q_review_title": ("回答已保存", "Your answer is saved"),
    "q_retake": ("重新回答（还可 {n} 次）", "Retake ({n} left)"),
    "q_next": ("下一题", "Next question"),
    "q_finish": ("完成面试", "Finish interview"),
    "q_seconds": ("秒", "s"),
    "q_captions": ("实时字幕", "Live captions"),
    "q_captions_wait": ("开始说话后，这里会显示识别到的文字", "Your words appear here as you speak"),
    "q_media_image": ("请看图片", "Look at the picture"),
    "q_media_video": ("请看视频", "Watch the video"),
    # paused / help
    "paused_title": ("面试已暂停", "Interview paused"),
    "paused_sub": ("我们看不到您了。请回到摄像头前，面试会自动继续。",
                   "We can no longer see you. Come back in front of the camera and the interview continues."),
    "paused_resume": ("我回来了，继续", "I'm back, continue"),
    "help_title": ("已通知工作人员", "A member of staff is on the way"),
    "help_sub": ("请稍候，工作人员很快会来帮助您。", "Please wait here, someone will come to help you shortly."),
    "help_resume": ("问题已解决，继续面试", "Solved, continue the interview"),
    # end states
    "finishing_title": ("正在完成面试…", "Finishing your interview…"),
    "finishing_sub": ("正在安全保存您的回答，请不要离开", "Your answers are being saved securely, please stay a moment"),
    "done_title": ("面试完成，谢谢您！", "Thank you, your interview is complete!"),
    "done_sub": ("您现在可以离开了。招聘团队会尽快与您联系，祝您顺利！",
                 "You may leave now. The hiring team will contact you soon. All the best!"),
    "declined_title": ("好的，我们尊重您的选择", "Of course, we respect your choice"),
    "declined_sub": ("面试不会进行，也不会录制任何内容。我们已通知招聘团队，他们会与您联系安排其他方式。",
                     "The interview will not take place and nothing was recorded. We have told the hiring team; they will contact you about other options."),
    "abandoned_title": ("面试已结束", "The interview has ended"),
    "abandoned_sub": ("您已回答的问题已保存。如需继续，请联系招聘团队。", "Answers you gave are saved. Please contact the hiring team to continue."),
    "interrupted_title": ("面试被中断", "The interview was interrupted"),
    "interrupted_sub": ("您已回答的问题已保存。请联系工作人员，他们会告诉您接下来怎么做。",
                        "The answers you gave are saved. Please ask a member of staff what to do next."),
    "error_title": ("设备出现问题", "The terminal has a problem"),
    "error_sub": ("很抱歉，{component}出现故障。您已回答的问题已保存，我们已通知工作人员，请在这里稍候。",
                  "Sorry, the {component} stopped working. Your answers so far are saved and staff have been told: please wait here."),
    "component_camera": ("摄像头", "camera"),
    "component_microphone": ("麦克风", "microphone"),
    "component_device": ("设备", "terminal"),
    "back_home": ("返回首页", "Back to start"),
    "verify_failed": ("签到未成功", "Sign-in did not work"),
    # technician
    "tech_title": ("技术人员登录", "Technician sign-in"),
    "tech_sub": ("请输入维护 PIN", "Enter the service PIN"),
    "tech_wrong": ("PIN 不正确，还可尝试 {n} 次", "Wrong PIN, {n} tries left"),
    "tech_locked": ("尝试次数过多，请 {s} 秒后再试", "Too many tries, wait {s} s"),
    "tech_no_pin": ("未设置维护 PIN：请在终端上运行 sudo kiosk-provision pin set",
                    "No service PIN set: run sudo kiosk-provision pin set on the terminal"),
    "tech_panel": ("维护模式", "Service mode"),
    "tech_selftest": ("运行自检", "Run self-test"),
    "tech_exit_app": ("退出程序", "Quit kiosk"),
    "tech_leave": ("返回面试模式", "Back to kiosk mode"),
    # the service panel's body: for the technician, never candidate data
    "tech_device": ("终端：{device}（{tenant}）", "Device: {device}  ({tenant})"),
    "tech_site": ("地点：{site}", "Site: {site}"),
    "tech_version": ("软件版本：{version}", "Software: {version}"),
    "tech_state": ("状态：{state}", "State: {state}"),
    "tech_outbox": ("待发送：{n} 条，最早的已等 {s} 秒；已送达 {delivered} 条",
                    "Outbox: {n} waiting, oldest {s} s; {delivered} delivered"),
    "tech_outbox_error": ("待发送队列无法读取：{error}", "Outbox unavailable: {error}"),
    "tech_camera": ("摄像头：{status}  {size}", "Camera: {status}  {size}"),
    "tech_mic": ("麦克风：{status}  电平 {level} dBFS", "Microphone: {status}  level {level} dBFS"),
    "tech_running": ("正常", "ok"),
    "tech_not_running": ("未运行", "NOT RUNNING"),
    "tech_stall": ("界面最长卡顿：{ms} 毫秒", "GUI max stall: {ms} ms"),
    "tech_selftest_error": ("自检出错：{error}", "Self-test error: {error}"),
    "tech_no_selftest": ("尚未运行自检", "No self-test run yet"),
    "tech_pass": ("通过", "PASS"),
    "tech_fail": ("未通过", "FAIL"),
    "tech_check": ("  {result} {name}：{value}", "  {result} {name}: {value}"),
    "tech_check_hint": ("  {result} {name}：{value} — {hint}", "  {result} {name}: {value} — {hint}"),
    "tech_loading": ("正在读取…", "Loading…"),
    # the machine's states, as the technician reads them
    "state_idle": ("待机", "idle"),
    "state_verifying": ("正在签到", "verifying"),
    "state_welcome": ("欢迎页", "welcome"),
    "state_device_check": ("设备检查", "device check"),
    "state_prepare": ("准备回答", "preparing"),
    "state_answer": ("正在回答", "answering"),
    "state_review": ("回答已保存", "review"),
    "state_finishing": ("正在完成", "finishing"),
    "state_done": ("已完成", "done"),
    "state_help": ("等待工作人员", "help"),
    "state_paused": ("已暂停", "paused"),
    "state_declined": ("未同意", "declined"),
    "state_abandoned": ("已放弃", "abandoned"),
    "state_interrupted": ("已中断", "interrupted"),
    "state_failed": ("设备故障", "failed"),
}


def tr(key: str, lang: str, **fmt) -> str:
    pair = TEXT.get(key)
    if pair is None:
        log.warning("missing UI text %r", key)
        return key
    text = pair[0] if lang == "zh" else pair[1]
    try:
        return text.format(**fmt) if fmt else text
    except (KeyError, IndexError):
        log.warning("UI text %r: bad format arguments", key)
        return text


@dataclass(frozen=True)
class Message:
    """A text on screen that is not yet in a language: a key of TEXT with its params (a
    param may itself be a Message), or a (zh, en) pair from elsewhere (device.signin's
    refusals, which the phone shows in the same words; a self-test hint). Empty = nothing."""

    key: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    pair: tuple[str, str] | None = None

    @classmethod
    def of(cls, key: str, **params: Any) -> Message:
        return cls(key, params)

    @classmethod
    def both(cls, zh: str, en: str) -> Message:
        return cls(pair=(zh, en))

    def __bool__(self) -> bool:
        return bool(self.key or (self.pair and any(self.pair)))

    def text(self, lang: str) -> str:
        if self.pair is not None:
            return self.pair[0] if lang == "zh" else self.pair[1]
        if not self.key:
            return ""
        params = {k: v.text(lang) if isinstance(v, Message) else v for k, v in self.params.items()}
        return tr(self.key, lang, **params)


NO_MESSAGE = Message()
