"""The words of the subscription pages and confirmation mails, per site language."""

TEXT = {
    "ja": {
        "unsubscribe_title": "配信停止", "unsubscribe_ask": "{email} へのダイジェストの配信を停止しますか？",
        "unsubscribe_button": "配信を停止する", "unsubscribed": "{email} への配信を停止しました。",
        "subscribe_title": "ダイジェストの購読", "email": "メールアドレス",
        "categories": "カテゴリ（未選択ならすべて）", "subscribe_button": "確認メールを送る",
        "check_inbox": "確認メールを送りました。メール内のリンクから登録を確定してください。"
                       "届かない場合は迷惑メールフォルダをご確認ください。",
        "too_many": "短時間に多くのリクエストがありました。しばらくしてからお試しください。",
        "bad_email": "メールアドレスの形式が正しくありません。", "confirm_title": "購読の確定",
        "confirm_ask": "{email} で週刊ダイジェストの購読を確定しますか？", "confirm_button": "購読を確定する",
        "confirmed": "登録が完了しました。次回のダイジェストからお届けします。",
        "preferences_title": "配信設定", "save": "設定を保存する", "saved": "設定を保存しました。",
        "bad_link": "このリンクは使えません（{reason}）。最新のメールにあるリンクをお使いください。",
        "bad_form": "フォームの有効期限が切れました。ページを読み込み直してからもう一度お試しください。",
        "confirm_subject": "{site} 購読の確認",
        "already_mail": "{site} の週刊ダイジェストは、このアドレスですでに購読中です。\n\n"
                        "カテゴリの変更や配信停止は、次のリンクからどうぞ:\n{url}\n\n"
                        "お心当たりのない場合は、このメールを破棄してください。",
        "confirm_mail": "{site} の週刊ダイジェストへの登録を受け付けました。\n\n"
                        "登録を確定するには、次のリンクを開いてください（{hours} 時間有効）:\n{url}\n\n"
                        "お心当たりのない場合は、このメールを破棄してください。登録は行われません。",
        "error": "エラーが発生しました。時間をおいてもう一度お試しください。", "not_found": "ページが見つかりません。",
        "all": "すべて",
        "link_used": "このリンクはすでに使われたか、有効期限が切れています。もう一度登録をお申し込みください。",
        "bad_request": "リクエストを読み取れませんでした。ページを読み込み直してからもう一度お試しください。",
        "too_large": "送信されたデータが大きすぎます。", "not_allowed": "この操作はできません。",
        "unavailable": "ただいま処理できません。時間をおいてもう一度お試しください。",
    },
    "en": {
        "unsubscribe_title": "Unsubscribe", "unsubscribe_ask": "Stop sending the digest to {email}?",
        "unsubscribe_button": "Unsubscribe", "unsubscribed": "{email} will receive no more digests.",
        "subscribe_title": "Subscribe to the digest", "email": "Email address",
        "categories": "Categories (none selected: all)", "subscribe_button": "Send confirmation email",
        "check_inbox": "We sent a confirmation email. Open the link in it to finish subscribing.",
        "too_many": "Too many requests. Please try again later.", "bad_email": "That email address is not valid.",
        "confirm_title": "Confirm your subscription", "confirm_ask": "Subscribe {email} to the weekly digest?",
        "confirm_button": "Confirm subscription", "confirmed": "You are subscribed.",
        "preferences_title": "Preferences", "save": "Save", "saved": "Your preferences were saved.",
        "bad_link": "This link cannot be used ({reason}). Use the link in your latest email.",
        "bad_form": "The form expired. Reload the page and try again.",
        "confirm_subject": "{site}: confirm your subscription",
        "already_mail": "This address is already subscribed to the {site} digest.\n\n"
                        "To change your categories or unsubscribe, open:\n{url}\n\n"
                        "If it was not you, ignore this email.",
        "confirm_mail": "Someone (hopefully you) asked to subscribe this address to the {site} digest.\n\n"
                        "To confirm, open this link within {hours} hours:\n{url}\n\n"
                        "If it was not you, ignore this email: nothing happens.",
        "error": "Something went wrong. Please try again later.", "not_found": "Page not found.", "all": "All",
        "link_used": "This link was already used or has expired. Please sign up again.",
        "bad_request": "The request could not be read. Reload the page and try again.",
        "too_large": "The request is too large.", "not_allowed": "This action is not available here.",
        "unavailable": "This cannot be done right now. Please try again later.",
    },
}


def texts_for(language: str) -> dict[str, str]:
    """The texts for a site language tag such as 'ja' or 'en-US' (English when unknown)."""
    return TEXT.get(language.split("-")[0].lower(), TEXT["en"])
