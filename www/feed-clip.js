// A short video clip the page makes itself: frames drawn on a canvas,
// recorded by MediaRecorder into a WebM blob. Nothing is downloaded.
//
// A recorded WebM carries no duration (the recorder cannot know it up
// front), so a video reports `Infinity` until played through. `loadClip`
// asks the browser to find the end once (seeking far past it), which makes
// the duration known before playback and the quartiles of the clip real.

/** Records a `seconds`-long clip of `width` x `height` showing `label`; resolves to a blob URL. */
export function makeClip({ seconds = 4, width = 320, height = 180, label = "glimpse", hue = 250 } = {}) {
  if (typeof MediaRecorder === "undefined" || !HTMLCanvasElement.prototype.captureStream) {
    return Promise.reject(new Error("this browser cannot record a canvas"));
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const stream = canvas.captureStream(30);
  const type = ["video/webm;codecs=vp8", "video/webm", "video/mp4"].find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const chunks = [];
  recorder.ondataavailable = (e) => { if (e.data.size > 0) chunks.push(e.data); };
  const start = performance.now();
  const total = seconds * 1000;
  let raf = 0;
  const draw = () => {
    const t = Math.min(1, (performance.now() - start) / total);
    ctx.fillStyle = `hsl(${hue + t * 80} 70% 35%)`;
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "rgb(255 255 255 / 0.85)";
    ctx.beginPath();
    ctx.arc(width * (0.15 + 0.7 * t), height * 0.45, height * 0.18, 0, 2 * Math.PI);
    ctx.fill();
    ctx.font = `600 ${Math.round(height / 9)}px system-ui, sans-serif`;
    ctx.fillText(label, width * 0.06, height * 0.88);
    ctx.fillRect(0, height - 6, width * t, 6);
    raf = requestAnimationFrame(draw);
  };
  draw();
  return new Promise((resolve, reject) => {
    recorder.onstop = () => {
      cancelAnimationFrame(raf);
      stream.getTracks().forEach((track) => track.stop());
      resolve(URL.createObjectURL(new Blob(chunks, { type: recorder.mimeType || "video/webm" })));
    };
    recorder.onerror = (e) => reject(e.error ?? new Error("recording failed"));
    recorder.start(250);
    // A timer keeps running in a background tab, where animation frames stop.
    setTimeout(() => recorder.stop(), total);
  });
}

/** Sets `video`'s source to the clip at `url`; resolves once its duration is known (or cannot be). */
export function loadClip(video, url) {
  return new Promise((resolve) => {
    const known = () => Number.isFinite(video.duration) && video.duration > 0;
    const done = () => {
      video.removeEventListener("durationchange", check);
      video.removeEventListener("loadedmetadata", check);
      video.removeEventListener("error", done);
      resolve(video);
    };
    const check = () => {
      if (known()) {
        if (video.currentTime !== 0) video.currentTime = 0;
        if (video.seeking) video.addEventListener("seeked", done, { once: true });
        else done();
      } else if (video.readyState >= 1 && !video.seeking) {
        // Past the end: the browser reads the clip to it and learns the duration.
        video.currentTime = 1e9;
      }
    };
    video.addEventListener("durationchange", check);
    video.addEventListener("loadedmetadata", check);
    video.addEventListener("error", done);
    video.src = url;
  });
}
