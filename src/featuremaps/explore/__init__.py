"""``featuremaps explore``: an interactive, offline explorer of any CNN in the browser.

``session`` holds the model side (images, one forward pass each, cached maps, pictures drawn with
:mod:`featuremaps.render`), ``cache`` the byte-bounded LRU store, ``receptive`` the receptive fields of conv layers,
``live`` the camera's frames (a queue of one, the face, one forward pass, the answer), ``patterns`` the "what it
looks for" panel's background jobs (feature visualization and exemplars of a channel), ``app`` the FastAPI app
(imported only when asked for: FastAPI is the optional ``[explore]`` extra) and ``static/`` the page. Start it
with ``featuremaps explore`` or::

    from featuremaps.explore.app import UVICORN_OPTIONS, create_app
    app = create_app(featuremaps.models.load("vgg16", weights="none"), [])
    uvicorn.run(app, host="127.0.0.1", port=8000, **UVICORN_OPTIONS)
"""
