"""What a person does in a browser: move the mouse and click, type, press keys. Nothing here
calls the page's JavaScript to act; locators are used only to find where things are on screen."""

from playwright.sync_api import Locator, Page


def where(page: Page, target) -> tuple[float, float]:
    locator: Locator = page.locator(target).first if isinstance(target, str) else target
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box is not None, f"{target} is not on screen"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def click(page: Page, target) -> None:
    page.mouse.click(*where(page, target))


def click_and_wait(page: Page, target) -> None:
    """Click something that loads a new page, and wait for it."""
    with page.expect_navigation():
        click(page, target)


def press_and_wait(page: Page, key: str) -> None:
    with page.expect_navigation():
        page.keyboard.press(key)


def type_into(page: Page, target, text: str) -> None:
    click(page, target)
    page.keyboard.type(text)


def drag(page: Page, source, target_x: float, target_y: float) -> None:
    """Press on `source`, move in steps to the point, release: a drag as a hand makes it."""
    x, y = where(page, source)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 10, y + 10, steps=3)
    page.mouse.move(target_x, target_y, steps=12)
    page.mouse.up()


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/login/")
    type_into(page, "#id_username", username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    press_and_wait(page, "Enter")
    assert "/login/" not in page.url, f"{username} could not log in"
