"""Draws the web demo's example images (zsvqa/demo_images/): simple shapes, no photos. Run from anywhere."""
from PIL import Image, ImageDraw
out = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "zsvqa" / "demo_images") + "/"
# 1: a red ball on grass under a blue sky with a yellow sun
im = Image.new("RGB", (384, 384), (135, 196, 250)); d = ImageDraw.Draw(im)
d.rectangle([0, 250, 384, 384], fill=(60, 160, 60)); d.ellipse([290, 30, 350, 90], fill=(250, 215, 40))
d.ellipse([140, 190, 230, 280], fill=(210, 30, 30)); im.save(out + "red_ball.png", optimize=True)
# 2: a house with a brown door and a tree
im = Image.new("RGB", (384, 384), (200, 225, 245)); d = ImageDraw.Draw(im)
d.rectangle([0, 300, 384, 384], fill=(90, 170, 80)); d.rectangle([80, 180, 260, 300], fill=(235, 225, 200))
d.polygon([(60, 180), (170, 90), (280, 180)], fill=(170, 50, 40)); d.rectangle([150, 230, 190, 300], fill=(110, 70, 30))
d.rectangle([300, 200, 320, 300], fill=(100, 60, 30)); d.ellipse([270, 130, 350, 220], fill=(40, 130, 40))
im.save(out + "house.png", optimize=True)
# 3: two blue cars on a grey road
im = Image.new("RGB", (384, 384), (170, 210, 240)); d = ImageDraw.Draw(im)
d.rectangle([0, 230, 384, 384], fill=(110, 110, 115)); d.line([0, 310, 384, 310], fill=(250, 250, 250), width=4)
for x in (30, 210):
    d.rectangle([x, 200, x + 140, 250], fill=(30, 70, 200)); d.rectangle([x + 30, 170, x + 110, 205], fill=(60, 100, 220))
    d.ellipse([x + 15, 235, x + 50, 270], fill=(20, 20, 20)); d.ellipse([x + 90, 235, x + 125, 270], fill=(20, 20, 20))
im.save(out + "cars.png", optimize=True)
